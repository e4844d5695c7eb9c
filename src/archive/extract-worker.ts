/**
 * Worker thread of extractTarInWorker (extract-in-worker.ts): decompresses and extracts a
 * tar-family archive whose bytes the main thread posts in order, so that the main thread
 * keeps downloading (HTTP, range bookkeeping, verification hand-off) while this one writes
 * files. The same code as in-process extraction: decompress() then extractTar().
 *
 * Messages in: { type: "job", job } first (the thread starts before its job is known:
 * extract-in-worker.ts startExtractThread), then { type: "bytes", bytes } (acknowledged with
 * { type: "taken", bytes } once the extractor took them, which bounds what is in flight),
 * { type: "end" }, { type: "abort" }.
 * Out: { type: "done", result } or { type: "error", error } (a DsfetchError's fields).
 * Progress, for the sender's stall watchdog, is not a message: the job comes with a clock in
 * shared memory, set to now whenever this thread takes input or writes anything (a
 * decompressor may write for minutes without taking input). The sender reads it even while
 * its own thread is too busy to receive messages.
 */
import { parentPort } from "node:worker_threads";
import { type Codec, decompress, endDecompressors } from "./decompress.ts";
import type { TakenCrcSource } from "./gunzip.ts";
import type { ExtractLimits } from "./limits.ts";
import { extractTar, type WriteMode } from "./tar-extract.ts";
import { toThreadError } from "./thread-errors.ts";
import { postedResult } from "./thread-result.ts";

export interface ExtractJob {
  readonly compression: Codec | "none";
  readonly destination: string;
  readonly limits: ExtractLimits;
  readonly dataset: string;
  readonly xzMemoryLimit?: number | undefined;
  /** How files are written (tar-extract.ts WriteMode); default "auto". */
  readonly writes?: WriteMode | undefined;
}

export type ToWorker =
  | { type: "job"; job: ExtractJob; clock?: SharedArrayBuffer }
  | { type: "bytes"; bytes: Uint8Array }
  | { type: "end" }
  | { type: "abort" };

const port = parentPort;
if (port === null) throw new Error("extract-worker must run as a worker thread");
let jobGiven: ((job: ExtractJob) => void) | undefined;
const jobMessage = new Promise<ExtractJob>((resolve) => {
  jobGiven = resolve;
});
/** When this thread last showed progress, in ms since the epoch (see the header). */
let clock: Float64Array | undefined;
function touch(): void {
  if (clock !== undefined) clock[0] = performance.timeOrigin + performance.now();
}
const abort = new AbortController();
const queue: Uint8Array[] = [];
let ended = false;
let wake: (() => void) | undefined;

function wakeReader(): void {
  wake?.();
  wake = undefined;
}
abort.signal.addEventListener("abort", wakeReader, { once: true });
port.on("message", (message: ToWorker) => {
  if (message.type === "job") {
    if (message.clock !== undefined) clock = new Float64Array(message.clock);
    jobGiven?.(message.job);
  } else if (message.type === "bytes") queue.push(message.bytes);
  else if (message.type === "end") ended = true;
  else abort.abort(new Error("extraction aborted"));
  wakeReader();
});

/**
 * Acknowledges bytes taken from the queue (the sender bounds what is in flight by these)
 * and gives their batch back for reuse. Every batch must come back: one that died in this
 * thread's heap was freed only when this thread collected garbage, which the transferred
 * memory does not prompt. A 545 MB .tar.gz kept 565 MB of batches alive to the end
 * (peak RSS 770 MB).
 */
function giveBack(bytes: Uint8Array): void {
  touch();
  const returned = bytes.buffer;
  if (returned instanceof ArrayBuffer) {
    port?.postMessage({ type: "taken", bytes: bytes.length, returned }, [returned]);
  } else {
    port?.postMessage({ type: "taken", bytes: bytes.length });
  }
}

/** The next batch from the main thread, or undefined at the end. */
async function nextBatch(): Promise<Uint8Array | undefined> {
  for (;;) {
    abort.signal.throwIfAborted();
    const bytes = queue.shift();
    if (bytes !== undefined) return bytes;
    if (ended) return undefined;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  }
}

/**
 * The archive's bytes, straight from the batches, tar or compressed: the consumer is done
 * with a batch once it asks for the next (TarExtractor.write is synchronous and keeps no
 * reference to its chunk; a decompressing program has the chunk in its pipe by then, and a
 * stream decompressor is given copies: decompress.ts inputReused), so the previous one goes
 * back then, before waiting for the next: the sender may be waiting for exactly that
 * acknowledgement (whole 8 MiB+ ranges in shared memory; found by a review: with ranges
 * over 8 MiB a plain .tar hung, the last range held here unacknowledged). Compressed bytes
 * were copied here into new 4 MiB buffers for every codec: 94 ms of this thread's 654 ms on
 * the bench's 118 MiB .tar.bz2 (page faults of fresh memory more than the copy).
 */
async function* archiveBytes(): AsyncGenerator<Buffer> {
  for (;;) {
    const bytes = await nextBatch();
    if (bytes === undefined) return;
    yield Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    giveBack(bytes);
  }
}

const job = await jobMessage;
try {
  // The extractor keeps the CRC of what it took, for gzip's trailers (gunzip.ts).
  const takenCrc: TakenCrcSource = {};
  const tarBytes =
    job.compression === "none"
      ? archiveBytes()
      : decompress(job.compression, archiveBytes(), {
          signal: abort.signal,
          dataset: job.dataset,
          xzMemoryLimit: job.xzMemoryLimit,
          inputReused: true,
          taken: takenCrc,
        });
  const result = await extractTar(tarBytes, job.destination, job.limits, job.dataset, touch, {
    mode: job.writes,
    takenCrc: job.compression === "gzip" ? takenCrc : undefined,
    // Told to stop while it waits for files written in parallel (slow storage), it stops
    // then, not after them all: the main thread's grace period would end it unanswered.
    signal: abort.signal,
  });
  touch();
  const posted = postedResult(result);
  port.postMessage({ type: "done", result: posted.result }, posted.transfer);
} catch (error) {
  // The decompressor program, killed or about to be (extractTar does not wait for its source
  // to stop), is reaped before the answer: the main thread ends this thread on it, and a
  // child not reaped by then stays a zombie until the process exits (review, 2026-12-06).
  await endDecompressors();
  touch();
  port.postMessage({ type: "error", error: toThreadError(error, job.dataset) });
}
