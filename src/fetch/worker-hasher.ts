/**
 * The ordered MD5 follower of OrderedHasher, in a worker thread: same contract (advanceTo,
 * finish), used for large objects where hashing would otherwise compete with the network
 * and the writes for the main thread.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { workerFile } from "../util/worker-file.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import type { DigestAlgorithm } from "./verification.ts";

/** The worker is worth its start-up (~30 ms, a few MiB) above this size. */
export const WORKER_HASH_THRESHOLD = 64 * 1024 * 1024;
/** Tell the worker about new bytes at most this often (bytes). */
const ADVANCE_STEP = 4 * 1024 * 1024;

const WORKER_FILE = workerFile("hash-worker", import.meta.url);

export class WorkerHasher {
  private readonly worker: Worker;
  private readonly result: Promise<Buffer[]>;
  private told = 0;

  /** @param onHashed called now and then while it hashes (progress, for stall clocks) */
  constructor(
    path: string,
    parts: readonly ByteSpan[],
    algorithm: DigestAlgorithm,
    onHashed?: () => void,
  ) {
    this.worker = new Worker(WORKER_FILE, {
      workerData: { path, parts: parts.map((p) => ({ ...p })), algorithm },
    });
    this.result = digestsOf(this.worker, onHashed);
  }

  advanceTo(offset: number): void {
    if (offset - this.told < ADVANCE_STEP) return;
    this.told = offset;
    this.worker.postMessage({ type: "advance", offset });
  }

  finish(total: number): Promise<Buffer[]> {
    return finishWorker(this.worker, this.result, { type: "finish", total });
  }

  /** Stops the worker (a failed download). */
  dispose(): void {
    void this.worker.terminate();
  }
}

/**
 * The parts of a multipart object are hashed independently, so they can be spread over
 * several workers (every k-th part each): MD5 runs at ~0.5-0.75 GB/s per core here, below
 * what a fast link delivers, and on the critical path at the end of a download.
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
    const k = Math.max(1, Math.min(count, parts.length));
    this.workers = [];
    try {
      for (let i = 0; i < k; i++) {
        const mine = parts.filter((_, index) => index % k === i);
        this.workers.push(new WorkerHasher(path, mine, algorithm, onHashed));
      }
    } catch (error) {
      // Workers already started would keep the process alive.
      this.dispose();
      throw error;
    }
  }

  advanceTo(offset: number): void {
    for (const worker of this.workers) worker.advanceTo(offset);
  }

  async finish(total: number): Promise<Buffer[]> {
    const results = await Promise.all(this.workers.map((worker) => worker.finish(total)));
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
