/**
 * Worker thread of WorkerHasher (worker-hasher.ts): hashes files being written, in order, as
 * far as the main thread says each is contiguous, one digest per span. Runs off the main
 * thread, which keeps the network and the writes moving (MD5 costs ~1.5 s of CPU per GiB
 * here, a third of a large download's main-thread time). The MD5s of many parts are taken
 * eight at a time in SIMD lanes (md5-lanes.ts): 2 GiB in 8 MiB parts, 3.1 s -> 1.2 s.
 *
 * One thread may hash several jobs (files, or every k-th part of one) at once, each message
 * naming its job: the threads of the process are a fixed budget shared by the objects being
 * downloaded (review, 2026-12-06: a folder's 32 large objects in flight each started their
 * own 4 threads, 128 V8 isolates with their buffers on a 5-core machine). Each message is
 * handled to its end before the next, so jobs take turns in steps of what one `advance`
 * brings (ADVANCE_STEP, 4 MiB), and one read buffer serves them all.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import type { Checksum } from "./checksum/index.ts";
import { Md5Lanes, useMd5Lanes } from "./md5-lanes.ts";
import { createDigest, type DigestAlgorithm } from "./verification.ts";

interface Span {
  start: number;
  end: number;
}

/** What the main thread sends (worker-hasher.ts). */
export type HashWorkerMessage =
  | { type: "start"; job: number; path: string; parts: Span[]; algorithm: DigestAlgorithm }
  | { type: "advance"; job: number; offset: number }
  | { type: "finish"; job: number; total: number }
  /** The job is given up (a failed download): its file is closed, nothing more is said. */
  | { type: "drop"; job: number };

/** What this thread answers, about one job each. */
export type HashWorkerReply =
  | { type: "hashed"; job: number }
  | { type: "done"; job: number; digests: Uint8Array[] }
  | { type: "error"; job: number; message: string };

const port = parentPort;
if (port === null) throw new Error("hash-worker must run as a worker thread");

/** Read buffer of the in-order way, shared by the jobs (one message at a time runs). */
const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);

/**
 * Says "still hashing" every REPORT_BYTES: the hash of a large object trails its download
 * (by as much as the hash is slower than the link), and a folder's stall clock must not take
 * that tail for hung storage (stage/stage-dataset.ts; found in review).
 */
const REPORT_BYTES = 16 * 1024 * 1024;

class Job {
  private readonly id: number;
  private readonly parts: readonly Span[];
  private readonly algorithm: DigestAlgorithm;
  private readonly fd: number;
  private closed = false;
  private readonly digests: Uint8Array[] = [];
  private hash: Checksum;
  private partIndex = 0;
  // Parts need not be adjacent: with several workers each takes every k-th part.
  private hashedUpTo: number;
  private available = 0;
  private finishAt: number | undefined;
  private finished = false;
  private unreported = 0;
  // MD5 of many parts: eight at a time in SIMD lanes (~3x one core's sequential MD5).
  private readonly lanes: Md5Lanes | undefined;

  constructor(id: number, path: string, parts: readonly Span[], algorithm: DigestAlgorithm) {
    this.id = id;
    this.parts = parts;
    this.algorithm = algorithm;
    this.fd = openSync(path, "r");
    this.hash = createDigest(algorithm);
    this.hashedUpTo = parts[0]?.start ?? 0;
    this.lanes = useMd5Lanes(algorithm, parts.length) ? this.startLanes() : undefined;
  }

  advance(offset: number): void {
    this.available = Math.max(this.available, offset);
    this.pump();
  }

  finish(total: number): void {
    this.available = Math.max(this.available, total);
    this.finishAt = total;
    this.pump();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  get done(): boolean {
    return this.finished;
  }

  private hashedBytes(bytes: number): void {
    this.unreported += bytes;
    if (this.unreported < REPORT_BYTES) return;
    this.unreported -= REPORT_BYTES;
    reply({ type: "hashed", job: this.id });
  }

  private startLanes(): Md5Lanes | undefined {
    try {
      return new Md5Lanes(this.parts, (target, position) => {
        const read = readSync(this.fd, target, 0, target.length, position);
        if (read !== target.length) throw new Error(`short read at ${position}`);
        this.hashedBytes(read);
      });
    } catch {
      // No memory for the kernel's instance: OpenSSL's MD5, one part after the other.
      return undefined;
    }
  }

  private pump(): void {
    if (this.lanes !== undefined) this.pumpLanes(this.lanes);
    else this.pumpInOrder();
  }

  private pumpLanes(hasher: Md5Lanes): void {
    hasher.advance(this.available, this.finishAt !== undefined);
    if (this.finishAt !== undefined && !this.finished) {
      this.finished = true;
      this.close();
      if (!hasher.done) throw new Error(`not every part was hashed (${this.finishAt} bytes)`);
      reply({ type: "done", job: this.id, digests: hasher.results() });
    }
  }

  private pumpInOrder(): void {
    for (;;) {
      const part = this.parts[this.partIndex];
      if (part === undefined) break;
      if (this.hashedUpTo < part.start) this.hashedUpTo = part.start;
      if (this.hashedUpTo === part.end) {
        // An empty part (an empty object): its digest is that of nothing.
        this.digests.push(new Uint8Array(this.hash.digest()));
        this.hash = createDigest(this.algorithm);
        this.partIndex += 1;
        continue;
      }
      if (this.hashedUpTo >= this.available) break;
      const length = Math.min(
        buffer.length,
        this.available - this.hashedUpTo,
        part.end - this.hashedUpTo,
      );
      const read = readSync(this.fd, buffer, 0, length, this.hashedUpTo);
      if (read !== length) throw new Error(`short read at ${this.hashedUpTo}`);
      this.hash.update(buffer.subarray(0, length));
      this.hashedBytes(length);
      this.hashedUpTo += length;
      if (this.hashedUpTo === part.end) {
        this.digests.push(new Uint8Array(this.hash.digest()));
        this.hash = createDigest(this.algorithm);
        this.partIndex += 1;
      }
    }
    if (this.finishAt !== undefined && !this.finished) {
      this.finished = true;
      this.close();
      if (this.partIndex !== this.parts.length) {
        throw new Error(
          `hashed ${this.partIndex} of ${this.parts.length} parts (${this.hashedUpTo} of ${this.finishAt} bytes)`,
        );
      }
      reply({ type: "done", job: this.id, digests: this.digests });
    }
  }
}

function reply(message: HashWorkerReply): void {
  port?.postMessage(message);
}

const jobs = new Map<number, Job>();

port.on("message", (message: HashWorkerMessage) => {
  let job = jobs.get(message.job);
  try {
    if (message.type === "start") {
      job = new Job(message.job, message.path, message.parts, message.algorithm);
      jobs.set(message.job, job);
    } else if (job === undefined) {
      // Dropped already, or failed: nothing more to say about it.
    } else if (message.type === "drop") {
      job.close();
      jobs.delete(message.job);
    } else if (message.type === "advance") {
      job.advance(message.offset);
    } else {
      job.finish(message.total);
    }
    if (job?.done === true) jobs.delete(message.job);
  } catch (error) {
    // This job fails; the thread's other jobs go on.
    job?.close();
    jobs.delete(message.job);
    reply({
      type: "error",
      job: message.job,
      message: error instanceof Error ? error.message : String(error),
    });
  }
});
