/**
 * Many small files written at once, for storage where each file costs a round trip.
 *
 * Why: on a network filesystem (NFS, EFS, Lustre, a FUSE mount of an object store) creating a
 * file and closing it are requests to a server: ~1 ms or more each, where a local disk takes
 * ~10 us. One file at a time, 20,000 files of an archive then take a minute of waiting (GNU
 * tar: 127 s with 1 ms per request on a FUSE stand-in, bench/slowfs; our one-at-a-time
 * writer 55 s). Here the files go through libuv's thread pool, several in flight, started
 * across directories first: creating files in one directory is serialised by the kernel
 * (the directory's lock, on every filesystem), so files of different directories overlap
 * best. Each file costs three thread-pool round trips (open, write, close), ~35 us of CPU
 * here: a loss on a local disk, which is why the extractor only switches to this after it
 * measured slow creates (tar-extract.ts).
 *
 * Ordering: the caller hands over only files whose parent directories exist, and waits for
 * `idle()` before anything that needs the files on disk (hard links to them, symlinks, the
 * end). The first failure stops new files from starting and is kept for the caller;
 * `settle()` waits until no request is in flight, so that no file appears after the caller
 * removed its destination.
 */
import { close, open, write } from "node:fs";
import { parallelFileShare } from "../util/thread-pool.ts";
import { WRITE_PIECE } from "../util/write-piece.ts";

export interface ParallelFile {
  /** Absolute path to create (O_EXCL). */
  readonly path: string;
  /** The archive entry's name, for messages. */
  readonly name: string;
  readonly mode: number;
  readonly data: Buffer;
}

export interface ParallelFailure {
  readonly file: ParallelFile;
  readonly error: NodeJS.ErrnoException;
}

/** Files started at once, at most (util/thread-pool.ts: never the whole thread pool). */
export const PARALLEL_FILES = 16;
/** Bytes copied and waiting beyond which the extractor waits before taking more input. */
export const PARALLEL_QUEUED_BYTES = 16 << 20;
/**
 * What each waiting file counts for beyond its data: its bookkeeping, plus its path and name
 * (counted at 2 bytes a character). Empty files would otherwise queue without bound (found
 * in review: 200,000 empty files of a small .tar.gz all queued at once; then 60,000 empty
 * files with 3.8 KB names, +400 MiB of heap).
 */
const FILE_OVERHEAD_BYTES = 512;

function queuedSize(file: ParallelFile): number {
  return file.data.length + FILE_OVERHEAD_BYTES + 2 * (file.path.length + file.name.length);
}

export class ParallelWrites {
  private readonly flags: number;
  private readonly onProgress: () => void;
  private readonly concurrency: number;
  private readonly maxQueuedBytes: number;
  /** Files waiting, by parent directory (insertion order: the archive's order of directories). */
  private readonly waiting = new Map<string, ParallelFile[]>();
  /** Files in flight per parent directory. */
  private readonly busyDirs = new Map<string, number>();
  private inFlight = 0;
  private queuedBytes = 0;
  private stopped = false;
  private firstFailure: ParallelFailure | undefined;
  private wakers: (() => void)[] = [];
  /** Told once, at the first failure (the extractor stops waiting for input then). */
  onFailure: (() => void) | undefined;
  /**
   * Told of each file's data once nothing reads it any more (its writes answered, its
   * descriptor closed, or its open failed): file-data-pool.ts reuses the memory. Not told of
   * files dropped unwritten by a stop (left to the GC).
   */
  onDataDone: ((data: Buffer) => void) | undefined;

  constructor(
    flags: number,
    onProgress: () => void,
    concurrency = Math.max(1, parallelFileShare(PARALLEL_FILES)),
    maxQueuedBytes = PARALLEL_QUEUED_BYTES,
  ) {
    this.flags = flags;
    this.onProgress = onProgress;
    this.concurrency = Math.max(1, concurrency);
    this.maxQueuedBytes = maxQueuedBytes;
  }

  /** Whether files are still waiting or in flight. */
  get busy(): boolean {
    return this.inFlight > 0 || (this.waiting.size > 0 && !this.stopped);
  }

  /** The first failure, once there is one. */
  get failure(): ParallelFailure | undefined {
    return this.firstFailure;
  }

  add(file: ParallelFile): void {
    if (this.stopped) return;
    const dir = file.path.slice(0, file.path.lastIndexOf("/"));
    const queue = this.waiting.get(dir);
    if (queue === undefined) this.waiting.set(dir, [file]);
    else queue.push(file);
    this.queuedBytes += queuedSize(file);
    this.pump();
  }

  /** A promise while too many bytes wait (take no more input until it settles), else undefined. */
  backpressure(): Promise<void> | undefined {
    if (this.queuedBytes <= this.maxQueuedBytes || this.stopped) return undefined;
    return this.until(() => this.queuedBytes <= this.maxQueuedBytes || this.stopped);
  }

  /** Resolves once every file handed over is written and closed (or a failure stopped them). */
  idle(): Promise<void> {
    return this.until(() => this.inFlight === 0 && (this.waiting.size === 0 || this.stopped));
  }

  /** Starts no more files, and resolves once none is in flight (their descriptors closed). */
  settle(): Promise<void> {
    this.stop();
    return this.until(() => this.inFlight === 0);
  }

  private stop(): void {
    this.stopped = true;
    this.waiting.clear();
    this.queuedBytes = 0;
  }

  private until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (done()) resolve();
        else this.wakers.push(check);
      };
      this.wakers.push(check);
    });
  }

  private wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const check of wakers) check();
  }

  /** Starts files while there is room: from idle directories first, oldest directory first. */
  private pump(): void {
    while (this.inFlight < this.concurrency && !this.stopped && this.waiting.size > 0) {
      let chosen: string | undefined;
      for (const dir of this.waiting.keys()) {
        if ((this.busyDirs.get(dir) ?? 0) === 0) {
          chosen = dir;
          break;
        }
      }
      // Every waiting directory has a file in flight: the oldest gets another (its creates
      // queue on the directory's lock, but their writes and closes still overlap).
      chosen ??= this.waiting.keys().next().value as string;
      const queue = this.waiting.get(chosen) as ParallelFile[];
      const file = queue.shift() as ParallelFile;
      if (queue.length === 0) this.waiting.delete(chosen);
      this.queuedBytes -= queuedSize(file);
      this.busyDirs.set(chosen, (this.busyDirs.get(chosen) ?? 0) + 1);
      this.inFlight++;
      this.writeOne(file, () => {
        this.onDataDone?.(file.data);
        const left = (this.busyDirs.get(chosen) ?? 1) - 1;
        if (left === 0) this.busyDirs.delete(chosen);
        else this.busyDirs.set(chosen, left);
        this.inFlight--;
        this.onProgress();
        this.pump();
        this.wake();
      });
    }
  }

  private writeOne(file: ParallelFile, done: () => void): void {
    const fail = (error: NodeJS.ErrnoException): void => {
      if (this.firstFailure === undefined) {
        this.firstFailure = { file, error };
        this.onFailure?.();
      }
      this.stop();
    };
    open(file.path, this.flags, file.mode, (openError, fd) => {
      if (openError !== null) {
        fail(openError);
        done();
        return;
      }
      const finish = (error: NodeJS.ErrnoException | null): void => {
        if (error !== null) fail(error);
        close(fd, (closeError) => {
          if (closeError !== null && error === null) fail(closeError);
          done();
        });
      };
      const data = file.data;
      const writeFrom = (at: number): void => {
        // A file in flight is finished even after a stop: small, and no half file is left
        // behind by a refusal that came later (what is there is what the archive said).
        if (at >= data.length) {
          finish(null);
          return;
        }
        write(fd, data, at, Math.min(data.length - at, WRITE_PIECE), null, (error, written) => {
          if (error !== null) finish(error);
          // A write of nothing would loop forever: the disk is full (as util/write-piece.ts).
          else if (written === 0) finish(noSpace());
          else writeFrom(at + written);
        });
      };
      writeFrom(0);
    });
  }
}

function noSpace(): NodeJS.ErrnoException {
  return Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
}
