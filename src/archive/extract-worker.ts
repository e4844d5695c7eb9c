/**
 * Worker thread of extractTarInWorker (extract-in-worker.ts): decompresses and extracts a
 * tar-family archive whose bytes the main thread posts in order, so that the main thread
 * keeps downloading (HTTP, range bookkeeping, verification hand-off) while this one writes
 * files. The same code as in-process extraction: decompress() then extractTar().
 *
 * Messages in: { type: "bytes", bytes } (acknowledged with { type: "taken", bytes } once the
 * extractor took them, which bounds what is in flight), { type: "end" }, { type: "abort" }.
 * Out: { type: "done", result } or { type: "error", error } (a DsfetchError's fields).
 */
import { parentPort, workerData } from "node:worker_threads";
import { toDsfetchError } from "../errors.ts";
import { type Codec, decompress } from "./decompress.ts";
import type { ExtractLimits } from "./limits.ts";
import { extractTar } from "./tar-extract.ts";

export interface ExtractJob {
  readonly compression: Codec | "none";
  readonly destination: string;
  readonly limits: ExtractLimits;
  readonly dataset: string;
  readonly xzMemoryLimit?: number | undefined;
}

export type ToWorker = { type: "bytes"; bytes: Uint8Array } | { type: "end" } | { type: "abort" };

const port = parentPort;
if (port === null) throw new Error("extract-worker must run as a worker thread");
const job = workerData as ExtractJob;
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
  if (message.type === "bytes") queue.push(message.bytes);
  else if (message.type === "end") ended = true;
  else abort.abort(new Error("extraction aborted"));
  wakeReader();
});

/** The batch the consumer is working on. */
let lent: Uint8Array | undefined;

/**
 * Acknowledges a batch taken from the queue (the sender bounds what is in flight by these),
 * and gives back the memory of the previous one when that is safe: with no decompressor the
 * extractor is done with a batch once it asks for the next (TarExtractor.write is synchronous
 * and keeps no reference to its chunk). A decompressor may still hold its input: its
 * batches are not given back.
 */
function take(bytes: Uint8Array): void {
  const returned = job.compression === "none" ? lent?.buffer : undefined;
  lent = bytes;
  if (returned instanceof ArrayBuffer) {
    port?.postMessage({ type: "taken", bytes: bytes.length, returned }, [returned]);
  } else {
    port?.postMessage({ type: "taken", bytes: bytes.length });
  }
}

async function* received(): AsyncGenerator<Buffer> {
  for (;;) {
    abort.signal.throwIfAborted();
    const bytes = queue.shift();
    if (bytes !== undefined) {
      take(bytes);
      yield Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
      continue;
    }
    if (ended) return;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  }
}

try {
  const source = received();
  const tarBytes =
    job.compression === "none"
      ? source
      : decompress(job.compression, source, {
          signal: abort.signal,
          dataset: job.dataset,
          xzMemoryLimit: job.xzMemoryLimit,
        });
  const result = await extractTar(tarBytes, job.destination, job.limits, job.dataset);
  port.postMessage({ type: "done", result });
} catch (error) {
  const failure = toDsfetchError(error, job.dataset);
  port.postMessage({
    type: "error",
    error: {
      code: failure.code,
      message: failure.message,
      dataset: failure.dataset,
      expected: failure.expected,
      found: failure.found,
      hint: failure.hint,
      retryable: failure.retryable,
      // A bug's stack, for its report (a DsfetchError's own stack says nothing useful).
      detail: failure.code === "INTERNAL" && error instanceof Error ? error.stack : undefined,
    },
  });
}
