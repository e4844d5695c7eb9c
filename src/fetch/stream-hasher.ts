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
import { WORKER_RESOURCE_LIMITS } from "../util/worker-limits.ts";
import { useMd5Lanes } from "./md5-lanes.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { SpanDigests } from "./span-digests.ts";
import type { StreamHashJob } from "./stream-hash-worker.ts";
import type { DigestAlgorithm } from "./verification.ts";
import { digestsOf, WORKER_HASH_THRESHOLD } from "./worker-hasher.ts";

export interface StreamHasher {
  /** Bytes given that it may hold unacknowledged (and read) before update() says to wait. */
  readonly holdBytes: number;
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

/**
 * Parts at most this large are hashed several at once by the SIMD lanes (stream-hash-worker.ts):
 * 8 MiB, the part size of the AWS CLI, boto3 and most SDKs (rclone 5 MiB). Larger parts
 * (s5cmd's 50 MiB) stay one at a time: the lanes would need several of them held.
 */
const LANE_PART_MAX = 8 * 1024 * 1024;
/**
 * What the worker holds before hashing it in lanes, and what may be unacknowledged before the
 * sender waits: four parts of 8 MiB (a group of 8 was no faster in the prototype: 0.85-0.89 s
 * against 0.87-0.91 s).
 */
export const LANE_HOLD_BYTES = 4 * LANE_PART_MAX;

/** Whether a stream of these spans is hashed in lanes (MD5, >= 4 parts, parts <= 8 MiB). */
export function streamLanesApply(algorithm: DigestAlgorithm, spans: readonly ByteSpan[]): boolean {
  return (
    useMd5Lanes(algorithm, spans.length) &&
    spans.every((span) => span.end - span.start <= LANE_PART_MAX)
  );
}

const WORKER_FILE = workerFile("stream-hash-worker", import.meta.url);

export function createStreamHasher(
  algorithm: DigestAlgorithm,
  spans: readonly ByteSpan[],
  bytes: number,
  onHashed: (bytes: number) => void = () => {},
  /** For tests: the lanes' hold instead of LANE_HOLD_BYTES (small spans, small holds). */
  laneHold?: number,
): StreamHasher {
  if (bytes < WORKER_HASH_THRESHOLD || algorithm === "CRC32") {
    const digests = new SpanDigests(algorithm, spans);
    return {
      holdBytes: 0,
      update: (chunk) => {
        digests.update(chunk);
        onHashed(chunk.length);
        return undefined;
      },
      finish: async () => digests.digests,
      dispose: () => {},
    };
  }
  // At least 64 KiB: the worker keeps up to 63 bytes of a part it cannot hash yet.
  const holdBytes = streamLanesApply(algorithm, spans)
    ? Math.max(64 * 1024, laneHold ?? LANE_HOLD_BYTES)
    : undefined;
  return new WorkerSpanDigests(algorithm, spans, onHashed, holdBytes);
}

class WorkerSpanDigests implements StreamHasher {
  private readonly worker: Worker;
  private readonly result: Promise<Buffer[]>;
  private readonly batches: TransferBatches;
  private inFlight = 0;
  /** Unacknowledged bytes above which update() says to wait. */
  private readonly cap: number;
  /** Unacknowledged bytes at or below which a waiting update() goes on. */
  private readonly resumeAt: number;
  get holdBytes(): number {
    return this.cap;
  }
  private caughtUp: (() => void) | undefined;
  private failure: { error: unknown } | undefined;

  constructor(
    algorithm: DigestAlgorithm,
    spans: readonly ByteSpan[],
    onHashed: (bytes: number) => void,
    holdBytes: number | undefined,
  ) {
    // In lanes the worker hashes whenever it holds holdBytes: the sender goes on as soon as no
    // more than that is unacknowledged, so it never waits for bytes the worker holds without
    // hashing them (stream-hash-worker.ts). One at a time, every batch is acknowledged.
    this.cap = holdBytes ?? MAX_IN_FLIGHT;
    this.resumeAt = holdBytes ?? MAX_IN_FLIGHT / 2;
    const job: StreamHashJob = {
      algorithm,
      spans: spans.map((span) => ({ ...span })),
      holdBytes,
    };
    this.worker = new Worker(WORKER_FILE, {
      workerData: job,
      resourceLimits: WORKER_RESOURCE_LIMITS,
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
        if (this.inFlight <= this.resumeAt) this.release();
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
    if (this.inFlight <= this.cap) return undefined;
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
