/**
 * The ordered MD5 follower of OrderedHasher, in a worker thread: same contract (advanceTo,
 * finish), used for large objects where hashing would otherwise compete with the network
 * and the writes for the main thread. The threads are the process's (HashThreadPool), each
 * hashing one or more jobs (hash-worker.ts).
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { untilOrAborted } from "../util/until-or-aborted.ts";
import { workerFile } from "../util/worker-file.ts";
import { WORKER_RESOURCE_LIMITS } from "../util/worker-limits.ts";
import type { HashWorkerMessage, HashWorkerReply } from "./hash-worker.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import type { DigestAlgorithm } from "./verification.ts";

/** The worker is worth its start-up (~30 ms, a few MiB) above this size. */
export const WORKER_HASH_THRESHOLD = 64 * 1024 * 1024;
/** Tell the worker about new bytes at most this often (bytes). */
const ADVANCE_STEP = 4 * 1024 * 1024;

const WORKER_FILE = workerFile("hash-worker", import.meta.url);

/**
 * Hashing threads for the whole process, at most: one per core (no more than 16), and never
 * fewer than one object gets (hashThreads). Review, 2026-12-06: each large object of a folder
 * (32 in flight) started its own hashThreads() workers, 128 threads on a 5-core machine, each
 * a V8 isolate with a 4 MiB read buffer and its lanes' memory (1 GiB+ of RSS), taking turns
 * on the cores. Beyond the cores a thread only adds memory: the hashing is CPU-bound.
 */
export function hashThreadBudget(): number {
  return Math.max(hashThreads(), Math.min(16, availableParallelism()));
}

interface JobHandlers {
  hashed(): void;
  done(digests: Buffer[]): void;
  failed(error: Error): void;
}

interface HashThread {
  readonly worker: Worker;
  readonly jobs: Map<number, JobHandlers>;
}

/**
 * The process's hashing threads. An object asks for up to hashThreads() of them: new ones
 * while the budget allows (a lone large object gets them all, as before, so its speed is
 * unchanged), else it shares the least busy one; no object waits for a thread. A thread
 * whose last job ends is stopped.
 */
class HashThreadPool {
  budget = hashThreadBudget();
  /** Most threads running at once since the last hashThreadsForTests() call. */
  peak = 0;
  private readonly threads: HashThread[] = [];
  private nextJob = 1;

  get running(): number {
    return this.threads.length;
  }

  /** Up to `count` distinct threads, at least one. */
  take(count: number): HashThread[] {
    const taken: HashThread[] = [];
    while (taken.length < count && this.threads.length < this.budget) {
      try {
        taken.push(this.spawn());
      } catch (error) {
        // No thread to be had (resources): fewer, or a running one shared; none at all fails.
        if (taken.length > 0 || this.threads.length > 0) break;
        throw error;
      }
    }
    if (taken.length === 0) {
      let least = this.threads[0] as HashThread;
      for (const thread of this.threads) if (thread.jobs.size < least.jobs.size) least = thread;
      taken.push(least);
    }
    return taken;
  }

  /** Starts a job on `thread`; its answers go to `handlers`. */
  start(thread: HashThread, handlers: JobHandlers, message: StartMessage): number {
    const job = this.nextJob++;
    thread.jobs.set(job, handlers);
    try {
      thread.worker.postMessage({ ...message, type: "start", job } satisfies HashWorkerMessage);
    } catch (error) {
      void this.end(thread, job);
      throw error;
    }
    return job;
  }

  /** The job is over (finished or dropped): a thread left without jobs stops. */
  async end(thread: HashThread, job: number): Promise<void> {
    if (!thread.jobs.delete(job)) return;
    await this.stopIfIdle(thread);
  }

  /** Stops a thread without jobs (one taken, then not given any: a failed start). */
  async stopIfIdle(thread: HashThread): Promise<void> {
    if (thread.jobs.size > 0) return;
    this.remove(thread);
    await thread.worker.terminate();
  }

  private spawn(): HashThread {
    const thread: HashThread = {
      worker: new Worker(WORKER_FILE, { resourceLimits: WORKER_RESOURCE_LIMITS }),
      jobs: new Map(),
    };
    this.threads.push(thread);
    this.peak = Math.max(this.peak, this.threads.length);
    thread.worker.on("message", (message: HashWorkerReply) => {
      const handlers = thread.jobs.get(message.job);
      if (handlers === undefined) return;
      if (message.type === "hashed") handlers.hashed();
      else if (message.type === "done") {
        handlers.done(message.digests.map((digest) => Buffer.from(digest)));
      } else handlers.failed(new Error(`hashing failed: ${message.message}`));
    });
    const failAll = (error: Error) => {
      this.remove(thread);
      for (const handlers of thread.jobs.values()) handlers.failed(error);
    };
    thread.worker.on("error", failAll);
    thread.worker.on("exit", (code) => failAll(new Error(`the hashing worker exited (${code})`)));
    return thread;
  }

  private remove(thread: HashThread): void {
    const index = this.threads.indexOf(thread);
    if (index >= 0) this.threads.splice(index, 1);
  }
}

type StartMessage = Omit<Extract<HashWorkerMessage, { type: "start" }>, "type" | "job">;

const pool = new HashThreadPool();

/**
 * For tests: the process's hashing-thread budget (undefined: the default), and the most
 * threads running at once since the last call.
 */
export function hashThreadsForTests(budget?: number): { peak: number; running: number } {
  const seen = { peak: pool.peak, running: pool.running };
  pool.budget = budget ?? hashThreadBudget();
  pool.peak = pool.running;
  return seen;
}

export class WorkerHasher {
  private readonly thread: HashThread;
  private readonly job: number;
  private readonly result: Promise<Buffer[]>;
  private told = 0;
  private ended = false;

  /** @param onHashed called now and then while it hashes (progress, for stall clocks) */
  constructor(
    path: string,
    parts: readonly ByteSpan[],
    algorithm: DigestAlgorithm,
    onHashed?: () => void,
    thread: HashThread = pool.take(1)[0] as HashThread,
  ) {
    this.thread = thread;
    let handlers: JobHandlers | undefined;
    this.result = new Promise<Buffer[]>((resolve, reject) => {
      handlers = { hashed: () => onHashed?.(), done: resolve, failed: reject };
    });
    // Never unhandled: the caller awaits it in finish(), or gave up (dispose).
    this.result.catch(() => {});
    this.job = pool.start(thread, handlers as JobHandlers, {
      path,
      parts: parts.map((p) => ({ ...p })),
      algorithm,
    });
  }

  advanceTo(offset: number): void {
    if (offset - this.told < ADVANCE_STEP || this.ended) return;
    this.told = offset;
    this.post({ type: "advance", job: this.job, offset });
  }

  async finish(total: number): Promise<Buffer[]> {
    this.post({ type: "finish", job: this.job, total });
    try {
      return await this.result;
    } finally {
      await this.end();
    }
  }

  /** Gives the job up (a failed download); the thread goes on with its other jobs. */
  dispose(): void {
    if (this.ended) return;
    this.post({ type: "drop", job: this.job });
    void this.end();
  }

  private post(message: HashWorkerMessage): void {
    if (this.thread.jobs.has(this.job)) this.thread.worker.postMessage(message);
  }

  private async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await pool.end(this.thread, this.job);
  }
}

/**
 * The parts of a multipart object are hashed independently, so they can be spread over
 * several threads (every k-th part each): MD5 runs at ~0.5-0.75 GB/s per core here, below
 * what a fast link delivers, and on the critical path at the end of a download. `count` is
 * what the object would like; the process's budget may give it fewer (HashThreadPool).
 */
export class PartsHasher {
  private readonly workers: WorkerHasher[];

  constructor(
    path: string,
    parts: readonly ByteSpan[],
    algorithm: DigestAlgorithm,
    count: number,
    onHashed?: () => void,
  ) {
    this.workers = [];
    const threads = pool.take(Math.max(1, Math.min(count, parts.length)));
    try {
      const k = threads.length;
      for (const [i, thread] of threads.entries()) {
        const mine = parts.filter((_, index) => index % k === i);
        this.workers.push(new WorkerHasher(path, mine, algorithm, onHashed, thread));
      }
    } catch (error) {
      // Jobs already started, and threads started for none, would keep the process alive.
      this.dispose();
      for (const thread of threads) void pool.stopIfIdle(thread);
      throw error;
    }
  }

  advanceTo(offset: number): void {
    for (const worker of this.workers) worker.advanceTo(offset);
  }

  async finish(total: number): Promise<Buffer[]> {
    const settled = await Promise.allSettled(this.workers.map((worker) => worker.finish(total)));
    const failed = settled.find((result) => result.status === "rejected");
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    const results = settled.map((result) => (result as PromiseFulfilledResult<Buffer[]>).value);
    const k = this.workers.length;
    const partCount = results.reduce((sum, digests) => sum + digests.length, 0);
    return Array.from(
      { length: partCount },
      (_, i) => results[i % k]?.[Math.floor(i / k)] as Buffer,
    );
  }

  dispose(): void {
    for (const worker of this.workers) worker.dispose();
  }
}

/**
 * Hashing threads for one large multipart object: the cores beyond the main thread's, at
 * most 4. On this project's 2-core machines that is 1: a second hashing thread measured no
 * faster there (1 GiB: 3.26-3.87 s against 3.38 s), the cores being already busy with the
 * main thread and the local S3 server.
 */
export function hashThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

/**
 * The digests a hashing worker (hash-worker.ts, stream-hash-worker.ts) sends when done; a
 * failure, an error or an early exit rejects. Never unhandled: the caller awaits it later.
 */
export function digestsOf(worker: Worker, onHashed?: () => void): Promise<Buffer[]> {
  const result = new Promise<Buffer[]>((resolve, reject) => {
    worker.on(
      "message",
      (
        message:
          | { type: "done"; digests: Uint8Array[] }
          | { type: "error"; message: string }
          | { type: "hashed" },
      ) => {
        if (message.type === "hashed") onHashed?.();
        else if (message.type === "done")
          resolve(message.digests.map((digest) => Buffer.from(digest)));
        else if (message.type === "error") reject(new Error(`hashing failed: ${message.message}`));
      },
    );
    worker.on("error", reject);
    worker.on("exit", (code) => reject(new Error(`the hashing worker exited (${code})`)));
  });
  result.catch(() => {});
  return result;
}

/** Tells a hashing worker that everything was sent, waits for its digests, then stops it. */
export async function finishWorker(
  worker: Worker,
  result: Promise<Buffer[]>,
  message: unknown,
): Promise<Buffer[]> {
  worker.postMessage(message);
  try {
    return await result;
  } finally {
    await worker.terminate();
  }
}

/**
 * The digests of a whole written file over `parts` (each part's), hashed in the pool's
 * threads: a file verified again over other part boundaries (download-object.ts). Given up
 * at once when `signal` fires.
 */
export async function hashFileParts(
  path: string,
  parts: readonly ByteSpan[],
  algorithm: DigestAlgorithm,
  onHashed?: () => void,
  signal?: AbortSignal,
): Promise<Buffer[]> {
  signal?.throwIfAborted();
  const total = parts.at(-1)?.end ?? 0;
  const hasher = new PartsHasher(path, parts, algorithm, hashThreads(), onHashed);
  let digests: Buffer[] | undefined;
  const finished = hasher.finish(total).then((result) => {
    digests = result;
  });
  try {
    await untilOrAborted(finished, signal);
  } finally {
    if (digests === undefined) hasher.dispose();
  }
  return digests as Buffer[];
}
