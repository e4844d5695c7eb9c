/**
 * Decompression and tar extraction on a worker thread, fed in order from this thread.
 *
 * Why: streaming a tar-family archive puts the HTTP reads, the decompressor's plumbing and
 * every file write on one thread, so the download waits while files are written and the
 * other way round. With the extraction on its own thread both cores work: the main thread
 * only reads ranges and hands bytes over (one copy into a transferable batch).
 * The worker runs exactly decompress() + extractTar(): same checks, same errors.
 */
import { Worker } from "node:worker_threads";
import { DsfetchError, type ErrorCode } from "../errors.ts";
import { TransferBatches } from "../util/transfer-batches.ts";
import type { ExtractJob, ToWorker } from "./extract-worker.ts";
import type { ExtractResult } from "./tar-extract.ts";

export type { ExtractJob } from "./extract-worker.ts";

/** Bytes per message to the worker. */
const BATCH = 1024 * 1024;
/** Bytes posted but not yet taken by the extractor above which the sender waits. */
const MAX_IN_FLIGHT = 8 * BATCH;

// In development the sources run as .ts (Node strips the types); built, they are .js.
const WORKER_FILE = new URL(
  import.meta.url.endsWith(".ts") ? "./extract-worker.ts" : "./extract-worker.js",
  import.meta.url,
);

type FromWorker =
  | { type: "taken"; bytes: number; returned?: ArrayBuffer }
  | { type: "done"; result: ExtractResult }
  | {
      type: "error";
      error: {
        code: ErrorCode;
        message: string;
        dataset?: string;
        expected?: string;
        found?: string;
        hint?: string;
      };
    };

/**
 * Extracts the tar archive (compressed as `job.compression`) read from `source` into
 * `job.destination`. Rejects with the extractor's DsfetchError, the source's error, or the
 * signal's reason; the worker is gone when the promise settles.
 */
export async function extractTarInWorker(
  source: AsyncIterable<Buffer>,
  job: ExtractJob,
  signal?: AbortSignal,
): Promise<ExtractResult> {
  signal?.throwIfAborted();
  const worker = new Worker(WORKER_FILE, { workerData: job });
  let inFlight = 0;
  let settled = false;
  let wakeSender: (() => void) | undefined;
  const wake = () => {
    const resolve = wakeSender;
    wakeSender = undefined;
    resolve?.();
  };
  const post = (message: ToWorker, transfer?: ArrayBuffer[]) => {
    if (!settled) worker.postMessage(message, transfer);
  };
  const batches = new TransferBatches(BATCH, (bytes) => {
    inFlight += bytes.length;
    post({ type: "bytes", bytes }, [bytes.buffer as ArrayBuffer]);
  });
  const outcome = new Promise<ExtractResult>((resolve, reject) => {
    worker.on("message", (message: FromWorker) => {
      if (message.type === "taken") {
        inFlight -= message.bytes;
        if (message.returned !== undefined) batches.recycle(message.returned);
        if (inFlight <= MAX_IN_FLIGHT / 2) wake();
      } else if (message.type === "done") {
        resolve(message.result);
      } else {
        const { code, message: text, ...options } = message.error;
        reject(new DsfetchError(code, text, options));
      }
    });
    worker.on("error", (error) =>
      reject(
        new DsfetchError("INTERNAL", `the extraction thread failed: ${error.message}`, {
          dataset: job.dataset,
          hint: "this is a bug in dsfetch; please report it with the command you ran",
          cause: error,
        }),
      ),
    );
    worker.on("exit", (code) =>
      reject(
        new DsfetchError("INTERNAL", `the extraction thread exited (code ${code}) before the end`, {
          dataset: job.dataset,
          hint: "this is a bug in dsfetch, or the process is short of memory; please report it",
        }),
      ),
    );
  });
  const finished = outcome.finally(() => {
    settled = true;
    wake();
  });
  finished.catch(() => {});

  const onAbort = () => post({ type: "abort" });
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    try {
      for await (const chunk of source) {
        if (settled) break; // the extractor failed: its error is the answer
        batches.add(chunk);
        while (inFlight > MAX_IN_FLIGHT && !settled) {
          await new Promise<void>((resolve) => {
            wakeSender = resolve;
          });
        }
      }
      batches.flush();
      post({ type: "end" });
    } catch (error) {
      // The source failed (network, abort): stop the worker, report the source's error.
      post({ type: "abort" });
      await finished.catch(() => {});
      throw error;
    }
    try {
      return await outcome;
    } catch (error) {
      // An abort while the worker finishes: the worker's "aborted" is not the reason.
      signal?.throwIfAborted();
      throw error;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await worker.terminate();
  }
}
