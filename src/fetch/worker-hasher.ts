/**
 * The ordered MD5 follower of OrderedHasher, in a worker thread: same contract (advanceTo,
 * finish), used for large objects where hashing would otherwise compete with the network
 * and the writes for the main thread.
 */
import { Worker } from "node:worker_threads";
import type { ByteSpan } from "./ordered-hasher.ts";
import type { DigestAlgorithm } from "./verification.ts";

/** The worker is worth its start-up (~30 ms, a few MiB) above this size. */
export const WORKER_HASH_THRESHOLD = 64 * 1024 * 1024;
/** Tell the worker about new bytes at most this often (bytes). */
const ADVANCE_STEP = 4 * 1024 * 1024;

// In development the sources run as .ts (Node strips the types); built, they are .js.
const WORKER_FILE = new URL(
  import.meta.url.endsWith(".ts") ? "./hash-worker.ts" : "./hash-worker.js",
  import.meta.url,
);

export class WorkerHasher {
  private readonly worker: Worker;
  private readonly result: Promise<Buffer[]>;
  private told = 0;

  constructor(path: string, parts: readonly ByteSpan[], algorithm: DigestAlgorithm) {
    this.worker = new Worker(WORKER_FILE, {
      workerData: { path, parts: parts.map((p) => ({ ...p })), algorithm },
    });
    this.result = new Promise<Buffer[]>((resolve, reject) => {
      this.worker.on(
        "message",
        (message: { type: "done"; digests: Uint8Array[] } | { type: "error"; message: string }) => {
          if (message.type === "done")
            resolve(message.digests.map((digest) => Buffer.from(digest)));
          else reject(new Error(`hashing failed: ${message.message}`));
        },
      );
      this.worker.on("error", reject);
      this.worker.on("exit", (code) => reject(new Error(`the hashing worker exited (${code})`)));
    });
    this.result.catch(() => {});
  }

  advanceTo(offset: number): void {
    if (offset - this.told < ADVANCE_STEP) return;
    this.told = offset;
    this.worker.postMessage({ type: "advance", offset });
  }

  async finish(total: number): Promise<Buffer[]> {
    this.worker.postMessage({ type: "finish", total });
    try {
      return await this.result;
    } finally {
      await this.worker.terminate();
    }
  }

  /** Stops the worker (a failed download). */
  dispose(): void {
    void this.worker.terminate();
  }
}
