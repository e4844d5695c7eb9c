/**
 * A large multipart object written with direct I/O (O_DIRECT) and hashed from memory.
 *
 * Why: on this project's VMs every page-cache write of a fresh file pays for memory the VM
 * gave back to its host (util/write-piece.ts), and the MD5 was read back from the page cache
 * afterwards. Here each part is one ranged GET (one stream per part, in order), received into
 * page-aligned shared memory slots; a full slot is written to the file with O_DIRECT (the
 * device reads the slot itself: no page-cache copy) and hashed from the same slot by the SIMD
 * lanes in a worker (slot-hasher.ts), eight parts at a time. A slot is reused once both are
 * done. Measured here (dsfetch fetch, 2 GiB in 8 MiB parts, alternated with the buffered path
 * of this same version, 10 s of rest before each): 2.84-3.09 s against 4.08-4.40 s, system CPU
 * 1.26-1.35 s against 1.96-2.05 s; in a bad state of this VM's memory (and with another
 * process busy on one core) 4.2-5.1 s against 10.9-12.2 s: the page cache's cost varies, this
 * path does not pay it.
 *
 * Used only where it applies: MD5 of >= 4 parts, every part starting on a 4 KiB boundary (the
 * direct I/O alignment; part sizes are whole MiB in practice), and a filesystem that takes
 * O_DIRECT (tmpfs before Linux 6.6 and some FUSE filesystems refuse it at open, others at the
 * first write: the caller then downloads with buffered writes). The last block of the object
 * is written padded with zeros and the file truncated to the object's size.
 *
 * Not used for a zip (expand.ts), which is read again at once: its reads would come from the
 * disk instead of the page cache (1 GiB zip, alternated on a quiet machine: 6.64-6.75 s
 * against 6.16-6.30 s buffered).
 */
import { constants } from "node:fs";
import { type FileHandle, open, rm } from "node:fs/promises";
import { DsfetchError } from "../errors.ts";
import { alignedSharedMemory } from "../util/aligned-memory.ts";
import { storageError } from "../volumes/attempt.ts";
import type { DownloadObjectOptions } from "./download-object.ts";
import { READ_BUFFER_SIZE } from "./http1.ts";
import { LANES_RESERVED_BYTES, useMd5Lanes } from "./md5-lanes.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { fetchSpan, type RangeSink, rangeContext } from "./range-fetch.ts";
import { SlotHasher } from "./slot-hasher.ts";
import type { VerificationPlan } from "./verification.ts";

/** Offsets, lengths and buffer addresses of direct I/O are multiples of this. */
export const DIRECT_ALIGN = 4096;
/**
 * Bytes per write; a slot of memory holds one. 2 MiB rather than 1: half the writes, and
 * half the turns on the inode's lock, for which ext4's direct writes that extend a file wait
 * spinning (perf: every libuv thread in rwsem_down_write_slowpath). 2 GiB, alternated, 10 s of
 * rest before each: 2 MiB x 5 per stream 2.74-3.02 s (system CPU 1.08-1.25 s, peak RSS 176
 * MiB) against 1 MiB x 8 2.95-3.16 s (1.26-1.46 s, 161 MiB).
 */
export const SLOT_SIZE = 2 * 1024 * 1024;
/** Parts in flight by default (one ranged GET each), as many as the hashing lanes. */
const DEFAULT_STREAMS = 8;
/**
 * Slots per stream: one filling, the others being written and hashed (80 MiB for 8 streams).
 * The hashing lanes wait for every part to have bytes; with too few slots a stream often
 * waits for them and the lanes hash with few parts at a time (1 MiB slots: 4 per stream
 * 4.8-5.4 s, lanes 76% busy, 8 per stream 4.6-4.8 s, 95%; 2 MiB slots, 2 GiB: 2 per stream
 * 7.7-7.9 s with 7.9 s of user CPU, 4 per stream 2.83-3.05 s, 5 per stream 2.74-3.02 s).
 */
const SLOTS_PER_STREAM = 5;
/**
 * Bytes one GET asks for at most: consecutive parts are fetched together (4 parts of 8 MiB).
 * MinIO reads the object's metadata (its list of parts) for every request: 2 GiB in 256 parts
 * fetched a part per GET cost it 1.71-1.74 s of CPU on this 2-core VM, beside the download.
 */
const RUN_BYTES = 32 * 1024 * 1024;

// A body chunk (a view of http1.ts's read buffer) must fit in one slot's worth of room.
if (READ_BUFFER_SIZE > SLOT_SIZE) throw new Error("a read must fit in a slot");

/** O_DIRECT where the platform has it (Linux); undefined elsewhere. */
const O_DIRECT = (constants as { O_DIRECT?: number }).O_DIRECT;

/** The filesystem took O_DIRECT at open but refused the first direct write (EINVAL). */
export class DirectIoRefused extends Error {}

/** Whether this object can be fetched with direct writes (see the file comment). */
export function directIoApplies(plan: VerificationPlan, bytes: number): boolean {
  const spans = plan.spans;
  return (
    O_DIRECT !== undefined &&
    plan.algorithm === "MD5" &&
    spans !== undefined &&
    useMd5Lanes("MD5", spans.length) &&
    spans.every(
      (span, index) =>
        span.end > span.start &&
        span.start % DIRECT_ALIGN === 0 &&
        (index === spans.length - 1 ? span.end === bytes : span.end % DIRECT_ALIGN === 0),
    )
  );
}

/**
 * Creates `path` for direct writes; undefined where the filesystem refuses O_DIRECT (tmpfs:
 * EINVAL) or the platform has none.
 */
export async function openDirect(path: string): Promise<FileHandle | undefined> {
  if (O_DIRECT === undefined) return undefined;
  try {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_DIRECT;
    // Created read-only (the descriptor still writes): publishing needs no chmod per file.
    return await open(path, flags, 0o444);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
    // Linux creates the file before it refuses the flag (O_EXCL: it is ours): the buffered
    // download creates it again.
    await rm(path, { force: true });
    return undefined;
  }
}

export interface DirectTransfer {
  readonly refetchedBytes: number;
  readonly retries: number;
  /** MD5 of every part, in order. */
  readonly digests: Buffer[];
}

/** Downloads the object's parts into `file` (opened by openDirect) and hashes them. */
export async function transferDirect(
  file: FileHandle,
  options: DownloadObjectOptions,
  parts: readonly ByteSpan[],
): Promise<DirectTransfer> {
  const { source } = options;
  const streams = Math.max(1, Math.min(options.concurrency ?? DEFAULT_STREAMS, parts.length));
  const slotCount = streams * SLOTS_PER_STREAM;
  // The hashing lanes' own area first (they work in this memory and read the slots in place).
  const wasmMemory = alignedSharedMemory(LANES_RESERVED_BYTES + slotCount * SLOT_SIZE);
  if (wasmMemory === undefined) throw new DirectIoRefused("no shared memory for direct writes");
  const memory = wasmMemory.buffer;
  const view = Buffer.from(memory);
  /** Where a slot is in the memory. */
  const slotAt = (slot: number): number => LANES_RESERVED_BYTES + slot * SLOT_SIZE;
  const stats = { refetchedBytes: 0, retries: 0 };
  const abort = new AbortController();
  const signal =
    options.signal === undefined ? abort.signal : AbortSignal.any([abort.signal, options.signal]);

  const free: number[][] = Array.from({ length: streams }, (_, stream) =>
    Array.from({ length: SLOTS_PER_STREAM }, (_, i) => stream * SLOTS_PER_STREAM + i),
  );
  /** Per stream: the wait for a free slot, if one is pending (one at a time). */
  const waits: (Promise<void> | undefined)[] = new Array(streams).fill(undefined);
  const wakers: ((() => void) | undefined)[] = new Array(streams).fill(undefined);
  /** Per slot: what must still finish (its write, its hashing) before it is free again. */
  // Up to 1 + the parts a slot holds pieces of (a 2 MiB slot of 8 KiB parts: 257; a byte
  // wrapped there: review, 2026-12-06).
  const uses = new Uint16Array(slotCount);
  const release = (slot: number): void => {
    uses[slot] = (uses[slot] ?? 1) - 1;
    if (uses[slot] !== 0) return;
    const stream = Math.floor(slot / SLOTS_PER_STREAM);
    free[stream]?.push(slot);
    const wake = wakers[stream];
    wakers[stream] = undefined;
    wake?.();
  };
  const hasher = new SlotHasher(wasmMemory, parts, SLOTS_PER_STREAM - 1, release, (error) =>
    abort.abort(error),
  );
  /** Settles once `stream` has a free slot (at once if it has one), or rejects on abort. */
  const slotFreed = (stream: number): Promise<void> => {
    if ((free[stream]?.length ?? 0) > 0) return Promise.resolve();
    const pending = waits[stream];
    if (pending !== undefined) return pending;
    const wait = new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        waits[stream] = undefined;
        wakers[stream] = undefined;
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      wakers[stream] = () => {
        waits[stream] = undefined;
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
    });
    waits[stream] = wait;
    // A caller that went away (its connection failed) must not leave a rejection unhandled.
    wait.catch(() => {});
    return wait;
  };

  let anyWritten = false;
  /** The first direct write was refused: the caller downloads again with buffered writes. */
  let refused = false;
  /** Writes `length` bytes of the memory at `offset` to `position`, all of them. */
  const writeDirect = async (offset: number, length: number, position: number): Promise<void> => {
    let done = 0;
    while (done < length) {
      let written: number;
      try {
        ({ bytesWritten: written } = await file.write(
          view,
          offset + done,
          length - done,
          position + done,
        ));
      } catch (error) {
        // Some filesystems take the flag at open but not the alignment: buffered instead.
        if ((error as NodeJS.ErrnoException).code === "EINVAL" && !anyWritten) refused = true;
        throw error;
      }
      // A write of nothing would loop forever: the disk is full.
      if (written === 0) {
        throw Object.assign(new Error(`no space left: wrote ${done} of ${length} bytes`), {
          code: "ENOSPC",
        });
      }
      anyWritten = true;
      done += written;
    }
  };

  /** The sink of one GET: `run`, consecutive parts `first`, `first + 1`, …, in order. */
  const runSink = (stream: number, first: number, run: ByteSpan): RangeSink => {
    const pool = free[stream] as number[];
    let slot: number | undefined;
    let filled = 0;
    /** Bytes of the run given to a write (and to the hasher), in order. */
    let submitted = 0;
    /** The part the next bytes submitted belong to. */
    let part = first;
    let pending: Promise<void>[] = [];
    let failure: unknown;
    const check = (): void => {
      if (failure !== undefined) throw failure;
    };
    /**
     * Bytes the current slot may still take. A slot may hold the end of one part and the
     * start of the next: it is hashed as one piece of each. (Slots cut at part ends made a
     * read that crossed one need two free slots where the stream waits for one: review,
     * 2026-12-06, INTERNAL "no free slot" with parts of 6 MiB + 4 KiB.)
     */
    const slotRoom = (): number => SLOT_SIZE - filled;
    /** Gives the hasher the `bytes` at `offset` (from `position` of the object), part by part. */
    const hashPieces = (taken: number, offset: number, position: number, bytes: number): void => {
      const pieces: [number, number, number][] = [];
      for (let at = 0; at < bytes; ) {
        const end = (parts[part] as ByteSpan).end;
        const take = Math.min(bytes - at, end - (position + at));
        pieces.push([part, offset + at, take]);
        at += take;
        // The run goes on in the next part (the run's own end is its last part's).
        if (position + at === end && position + at < run.end) part += 1;
      }
      // Free once written and each piece hashed (the hasher releases a slot per piece).
      uses[taken] = 1 + pieces.length;
      for (const [index, at, length] of pieces) hasher.add(stream, index, taken, at, length);
    };
    const submit = (bytes: number): void => {
      const taken = slot as number;
      slot = undefined;
      filled = 0;
      const position = run.start + submitted;
      submitted += bytes;
      const offset = slotAt(taken);
      let length = bytes;
      if (bytes % DIRECT_ALIGN !== 0) {
        // Only the object's last block: parts start aligned and resume on aligned bytes.
        if (position + bytes !== source.bytes) throw new Error("unaligned direct write");
        length = Math.ceil(bytes / DIRECT_ALIGN) * DIRECT_ALIGN;
        view.fill(0, offset + bytes, offset + length);
      }
      hashPieces(taken, offset, position, bytes);
      pending.push(
        writeDirect(offset, length, position)
          .then(
            () => options.onBytes?.(bytes),
            (error: unknown) => {
              // A storage error is never retried: the transfer stops.
              failure ??= storageError(error, options.destination);
            },
          )
          .finally(() => release(taken)),
      );
    };
    return {
      kept: () => submitted,
      room: () => {
        if (slot === undefined) {
          slot = pool.pop();
          if (slot === undefined) return undefined;
        }
        return view.subarray(slotAt(slot) + filled, slotAt(slot) + filled + slotRoom());
      },
      push: (chunk) => {
        check();
        if (
          slot !== undefined &&
          chunk.buffer === memory &&
          chunk.byteOffset === slotAt(slot) + filled &&
          chunk.length <= slotRoom()
        ) {
          // Read from the socket straight into the slot (room()): nothing to copy.
          filled += chunk.length;
          if (slotRoom() === 0) submit(filled);
          return pool.length === 0 ? slotFreed(stream) : undefined;
        }
        for (let at = 0; at < chunk.length; ) {
          if (slot === undefined) {
            slot = pool.pop();
            // Never: every push and flush leaves a free slot or waits for one.
            if (slot === undefined) throw internalError("no free slot for received bytes");
          }
          const take = Math.min(slotRoom(), chunk.length - at);
          const into = slotAt(slot) + filled;
          // Buffer.fill copies with memcpy; copy() and set() into shared memory copy word by
          // word (V8's relaxed_memmove): 2 GiB cost ~0.6 s more of the main thread.
          view.fill(chunk.subarray(at, at + take), into, into + take);
          filled += take;
          at += take;
          if (slotRoom() === 0) submit(filled);
        }
        // The next chunk may need a new slot: wait for one while the connection pauses.
        return pool.length === 0 ? slotFreed(stream) : undefined;
      },
      flush: async () => {
        if (signal.aborted || failure !== undefined) {
          // Nobody resumes after this: what was received is not written.
          if (slot !== undefined) pool.push(slot);
          slot = undefined;
          filled = 0;
        } else if (slot !== undefined && filled === 0) {
          // Taken for room() but never filled.
          pool.push(slot);
          slot = undefined;
        } else if (slot !== undefined) {
          if (run.start + submitted + filled === run.end) submit(filled);
          else {
            // After a failure: keep the aligned part (the retry resumes after it), drop the
            // rest (< 4 KiB, fetched again).
            const aligned = filled - (filled % DIRECT_ALIGN);
            if (aligned > 0) submit(aligned);
            else {
              pool.push(slot);
              slot = undefined;
              filled = 0;
            }
          }
        }
        const writes = pending;
        pending = [];
        await Promise.all(writes);
        check();
        // A retry starts with a free slot (a connection that failed while its stream waited
        // for one would otherwise leave the retry's first bytes nowhere to go).
        if (slot === undefined) await slotFreed(stream);
      },
      failed: () => failure,
    };
  };

  const context = rangeContext(options, signal, stats);
  const runs = partRuns(parts, streams);
  let next = 0;
  const stream = async (id: number): Promise<void> => {
    while (next < runs.length && !signal.aborted) {
      const { first, span } = runs[next++] as PartRun;
      try {
        await fetchSpan(context, span, runSink(id, first, span));
      } catch (error) {
        abort.abort(error);
        throw error;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: streams }, (_, id) => stream(id)));
  const failed = results.find((result) => result.status === "rejected");
  if (failed !== undefined || options.signal?.aborted) {
    hasher.dispose();
    if (refused) throw new DirectIoRefused("the filesystem refused a direct write");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    throw options.signal?.reason;
  }
  try {
    // The last block was written whole (padded): the file ends at the object's end.
    if (source.bytes % DIRECT_ALIGN !== 0) await file.truncate(source.bytes);
  } catch (error) {
    hasher.dispose();
    throw storageError(error, options.destination);
  }
  const digests = await hasher.finish();
  return { ...stats, digests };
}

/** Consecutive parts fetched by one GET: from part `first`, the bytes of `span`. */
interface PartRun {
  readonly first: number;
  readonly span: ByteSpan;
}

/**
 * Groups consecutive parts into runs of up to RUN_BYTES, one GET each, while every stream
 * still gets several runs (a stream per lane: fewer runs than streams would leave lanes idle).
 */
export function partRuns(parts: readonly ByteSpan[], streams: number): PartRun[] {
  const perRun = Math.max(1, Math.floor(parts.length / (2 * streams)));
  const runs: PartRun[] = [];
  for (let index = 0; index < parts.length; ) {
    const first = index;
    const start = (parts[index] as ByteSpan).start;
    let end = (parts[index] as ByteSpan).end;
    index += 1;
    // Only adjacent parts (a run is one range of the object), and by their own sizes: parts
    // need not all be the first's (UploadPartCopy; review, 2026-12-06: a first part of 5 MiB
    // made runs of four 1 GiB parts).
    while (
      index - first < perRun &&
      index < parts.length &&
      (parts[index] as ByteSpan).start === end &&
      (parts[index] as ByteSpan).end - start <= RUN_BYTES
    ) {
      end = (parts[index] as ByteSpan).end;
      index += 1;
    }
    runs.push({ first, span: { start, end } });
  }
  return runs;
}

function internalError(message: string): DsfetchError {
  return new DsfetchError("INTERNAL", `direct download: ${message}`, {
    hint: "this is a bug in dsfetch; DSFETCH_DIRECT_IO=0 avoids this code; please report it",
  });
}
