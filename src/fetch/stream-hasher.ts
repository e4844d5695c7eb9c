/**
 * Per-span digests of a stream that arrives in order (archive expansion), computed on this
 * thread, or for large objects in a worker thread that receives the bytes in batches of
 * BATCH (copied once into a transferable buffer). CRC32 (zlib, 4.7 GB/s) always stays here.
 */
import { Worker } from "node:worker_threads";
import type { ByteSpan } from "./ordered-hasher.ts";
import { SpanDigests } from "./span-digests.ts";
import type { DigestAlgorithm } from "./verification.ts";
import { digestsOf, WORKER_HASH_THRESHOLD } from "./worker-hasher.ts";

export interface StreamHasher {
  /** A promise when the hasher is behind: await it before giving more (bounded memory). */
  update(chunk: Buffer): undefined | Promise<void>;
  /** Every span's digest, once the whole stream was given. */
  finish(): Promise<Buffer[]>;
  /** Stops a worker early (a failed download). */
  dispose(): void;
}

/** Bytes per message to the worker: few messages, little memory in flight. */
const BATCH = 1024 * 1024;
/** Bytes posted but not hashed yet above which the sender waits (MD5 can be the slow side). */
const MAX_IN_FLIGHT = 16 * BATCH;

// In development the sources run as .ts (Node strips the types); built, they are .js.
const WORKER_FILE = new URL(
  import.meta.url.endsWith(".ts") ? "./stream-hash-worker.ts" : "./stream-hash-worker.js",
  import.meta.url,
);

export function createStreamHasher(
  algorithm: DigestAlgorithm,
  spans: readonly ByteSpan[],
  bytes: number,
): StreamHasher {
  if (bytes < WORKER_HASH_THRESHOLD || algorithm === "CRC32") {
    const digests = new SpanDigests(algorithm, spans);
    return {
      update: (chunk) => {
        digests.update(chunk);
        return undefined;
      },
      finish: async () => digests.digests,
      dispose: () => {},
    };
  }
  return new WorkerSpanDigests(algorithm, spans);
}

class WorkerSpanDigests implements StreamHasher {
  private readonly worker: Worker;
  private readonly result: Promise<Buffer[]>;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inFlight = 0;
  private caughtUp: (() => void) | undefined;

  constructor(algorithm: DigestAlgorithm, spans: readonly ByteSpan[]) {
    this.worker = new Worker(WORKER_FILE, {
      workerData: { algorithm, spans: spans.map((span) => ({ ...span })) },
    });
    this.worker.on("message", (message: { type: string; bytes?: number }) => {
      if (message.type !== "hashed") return;
      this.inFlight -= message.bytes ?? 0;
      if (this.inFlight <= MAX_IN_FLIGHT / 2) this.release();
    });
    this.result = digestsOf(this.worker);
    // A failed worker must not leave the sender waiting.
    this.result.catch(() => this.release());
  }

  update(chunk: Buffer): undefined | Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= BATCH) this.post();
    if (this.inFlight <= MAX_IN_FLIGHT) return undefined;
    return new Promise<void>((resolve) => {
      this.caughtUp = resolve;
    });
  }

  private release(): void {
    const resolve = this.caughtUp;
    this.caughtUp = undefined;
    resolve?.();
  }

  async finish(): Promise<Buffer[]> {
    this.post();
    this.worker.postMessage({ type: "finish" });
    try {
      return await this.result;
    } finally {
      await this.worker.terminate();
    }
  }

  dispose(): void {
    this.release();
    void this.worker.terminate();
  }

  private post(): void {
    if (this.pendingBytes === 0) return;
    // One copy into a buffer of its own, whose memory then moves to the worker (no second copy).
    const bytes = new Uint8Array(this.pendingBytes);
    let at = 0;
    for (const chunk of this.pending) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    this.pending = [];
    this.pendingBytes = 0;
    this.inFlight += bytes.length;
    this.worker.postMessage({ type: "bytes", bytes }, [bytes.buffer]);
  }
}
