/**
 * Per-span digests of a stream that arrives in order (archive expansion), computed on this
 * thread, or for large objects in a worker thread that reads chunks in SharedArrayBuffer
 * memory in place, and receives other bytes in batches of BATCH (copied once into a
 * transferable buffer, given back for reuse once hashed). `onHashed` says how many more
 * bytes were hashed: shared memory may be reused only after that (util/chunk-ledger.ts).
 * CRC32 (zlib, 4.7 GB/s) always stays here.
 */
import { Worker } from "node:worker_threads";
import { TransferBatches } from "../util/transfer-batches.ts";
import { workerFile } from "../util/worker-file.ts";
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

const WORKER_FILE = workerFile("stream-hash-worker", import.meta.url);

export function createStreamHasher(
  algorithm: DigestAlgorithm,
  spans: readonly ByteSpan[],
  bytes: number,
  onHashed: (bytes: number) => void = () => {},
): StreamHasher {
  if (bytes < WORKER_HASH_THRESHOLD || algorithm === "CRC32") {
    const digests = new SpanDigests(algorithm, spans);
    return {
      update: (chunk) => {
        digests.update(chunk);
        onHashed(chunk.length);
        return undefined;
      },
      finish: async () => digests.digests,
      dispose: () => {},
    };
  }
  return new WorkerSpanDigests(algorithm, spans, onHashed);
}

class WorkerSpanDigests implements StreamHasher {
  private readonly worker: Worker;
  private readonly result: Promise<Buffer[]>;
  private readonly batches: TransferBatches;
  private inFlight = 0;
  private caughtUp: (() => void) | undefined;
  private failure: { error: unknown } | undefined;

  constructor(
    algorithm: DigestAlgorithm,
    spans: readonly ByteSpan[],
    onHashed: (bytes: number) => void,
  ) {
    this.worker = new Worker(WORKER_FILE, {
      workerData: { algorithm, spans: spans.map((span) => ({ ...span })) },
    });
    this.batches = new TransferBatches(BATCH, (bytes) => {
      this.inFlight += bytes.length;
      this.worker.postMessage({ type: "bytes", bytes }, [bytes.buffer as ArrayBuffer]);
    });
    this.worker.on(
      "message",
      (message: { type: string; bytes?: number; returned?: ArrayBuffer }) => {
        if (message.type !== "hashed") return;
        this.inFlight -= message.bytes ?? 0;
        onHashed(message.bytes ?? 0);
        if (message.returned !== undefined) this.batches.recycle(message.returned);
        if (this.inFlight <= MAX_IN_FLIGHT / 2) this.release();
      },
    );
    this.result = digestsOf(this.worker);
    // A failed worker must not leave the sender waiting, now or at its next update: no
    // acknowledgement would ever come again (found by a review: the download then stalled).
    this.result.catch((error: unknown) => {
      this.failure = { error };
      this.release();
    });
  }

  update(chunk: Buffer): undefined | Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure.error);
    if (chunk.buffer instanceof SharedArrayBuffer) {
      // Read in place by the worker; bytes copied before must reach it first (order).
      this.batches.flush();
      this.inFlight += chunk.length;
      this.worker.postMessage({ type: "bytes", bytes: chunk });
    } else this.batches.add(chunk);
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
    this.batches.flush();
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
}
