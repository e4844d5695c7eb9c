/**
 * Decompression and tar extraction on a worker thread, fed in order from this thread.
 *
 * Why: streaming a tar-family archive puts the HTTP reads, the decompressor's plumbing and
 * every file write on one thread, so the download waits while files are written and the
 * other way round. With the extraction on its own thread both cores work: the main thread
 * only reads ranges and hands bytes over: chunks in shared memory as they are (the thread
 * reads them in place), others copied into transferable batches.
 * The worker runs exactly decompress() + extractTar(): same checks, same errors.
 */
import { Worker } from "node:worker_threads";
import { DsfetchError } from "../errors.ts";
import { TransferBatches } from "../util/transfer-batches.ts";
import { workerFile } from "../util/worker-file.ts";
import { WORKER_RESOURCE_LIMITS } from "../util/worker-limits.ts";
import type { ExtractJob, ToWorker } from "./extract-worker.ts";
import {
  abandonThread,
  type EarlyEnd,
  endStalledThread,
  recordEarlyEnd,
  threadStartError,
} from "./thread-ending.ts";
import { fromThreadError, type ThreadError } from "./thread-errors.ts";
import {
  type PostedExtractResult,
  receivedResult,
  type ThreadExtractResult,
} from "./thread-result.ts";
import { ThreadWatchdog } from "./thread-watchdog.ts";

export type { ExtractJob } from "./extract-worker.ts";

/**
 * Bytes per message to the worker (a partial batch waits for more bytes, or the end). The
 * decompressor joins these into its 4 MiB writes (a second copy of the compressed bytes);
 * posting 4 MiB batches instead was no faster on a 1 GiB .tar.gz (3.30-3.36 s against
 * 3.29-3.94 s) and held more memory in flight.
 */
const BATCH = 1024 * 1024;
/**
 * Bytes posted but not yet taken by the extractor above which the sender waits (until half
 * is taken). Chunks in shared memory are posted whole (8 MiB ranges): the bound lets the
 * worker hold the next one while it works on the current one.
 */
const MAX_IN_FLIGHT = 16 * BATCH;

const WORKER_FILE = workerFile("extract-worker", import.meta.url);

type FromWorker =
  | { type: "taken"; bytes: number; returned?: ArrayBuffer }
  | { type: "done"; result: PostedExtractResult }
  | { type: "error"; error: ThreadError };

/**
 * An extraction thread started ahead of its job (startExtractThread). A stand-in thread
 * (tests) may come without the record of an early end.
 */
export interface ExtractThread extends Partial<EarlyEnd> {
  readonly worker: Worker;
}

/**
 * Starts an extraction thread before its job is known, so that its start-up (a thread and
 * the extraction modules: 0.14 s here, while the main thread receives the first ranges)
 * overlaps the download of the first range instead of following it. Give it to
 * extractTarInWorker, which ends it, or end it with stopExtractThread.
 */
export function startExtractThread(): ExtractThread {
  const worker = new Worker(WORKER_FILE, { resourceLimits: WORKER_RESOURCE_LIMITS });
  return { worker, ...recordEarlyEnd(worker) };
}

export async function stopExtractThread(thread: ExtractThread): Promise<void> {
  await thread.worker.terminate();
}

export interface ExtractInWorkerOptions {
  readonly signal?: AbortSignal | undefined;
  /** A thread started ahead (startExtractThread); default: one started now. */
  readonly thread?: ExtractThread | undefined;
  /**
   * How many more bytes of the source the extractor is done with. A chunk in a
   * SharedArrayBuffer is read in place by the thread: its memory may be reused only once its
   * bytes were reported (util/chunk-ledger.ts). Other chunks are copied, and may be reused
   * as soon as the source is asked for the next one.
   */
  readonly onTaken?: ((bytes: number) => void) | undefined;
  /**
   * Fail with STALLED when the thread has work (bytes given, or the end) and neither takes
   * input nor extracts anything for this long. Default: no bound.
   */
  readonly stallTimeoutMs?: number | undefined;
}

/**
 * Extracts the tar archive (compressed as `job.compression`) read from `source` into
 * `job.destination`, on a worker thread. Rejects with the extractor's DsfetchError, the
 * source's error, or the signal's reason; the thread is gone when the promise settles.
 */
export async function extractTarInWorker(
  source: AsyncIterable<Buffer>,
  job: ExtractJob,
  options: ExtractInWorkerOptions = {},
): Promise<ThreadExtractResult> {
  const { signal, onTaken, stallTimeoutMs } = options;
  const thread = options.thread ?? startExtractThread();
  const { worker } = thread;
  if (signal?.aborted === true) {
    await worker.terminate();
    signal.throwIfAborted();
  }
  const early = thread.endedEarly?.();
  if (early !== undefined) {
    await worker.terminate();
    throw threadStartError("extraction", early, job.dataset);
  }
  // From here the job's own listeners (below, in this same turn) take the thread's events.
  thread.adopt?.();
  // The thread sets it to now (ms since the epoch) whenever it takes input or writes.
  const clock = new Float64Array(new SharedArrayBuffer(8));
  worker.postMessage({
    type: "job",
    job,
    clock: clock.buffer as SharedArrayBuffer,
  } satisfies ToWorker);
  let inFlight = 0;
  // Every "bytes" message is acknowledged once ("taken"). Two may always be in flight, so
  // that the thread holds the next chunk while it works on one, whatever their size
  // (DSFETCH_RANGE_SIZE may make a shared chunk larger than MAX_IN_FLIGHT).
  let messagesInFlight = 0;
  let settled = false;
  let endPosted = false;
  let giveUp: ((error: DsfetchError) => void) | undefined;
  // Its view: progress as messages and the thread's clock show it; work: bytes or the end.
  const dog = new ThreadWatchdog({
    clock,
    stallTimeoutMs,
    settled: () => settled,
    hasWork: () => inFlight > 0 || endPosted,
    onStall: () => {
      giveUp?.(stallError(job, stallTimeoutMs ?? 0, inFlight));
      abortWorker();
    },
    // Told to stop (an abort, a failed source), the thread does not answer. The caller's
    // answer (the abort's reason, the source's error) goes on.
    onAbandon: () =>
      giveUp?.(
        new DsfetchError("INTERNAL", "the extraction thread did not stop when told to", {
          dataset: job.dataset,
        }),
      ),
  });
  let wakeSender: (() => void) | undefined;
  const wake = () => {
    const resolve = wakeSender;
    wakeSender = undefined;
    resolve?.();
  };
  const post = (message: ToWorker, transfer?: ArrayBuffer[]) => {
    if (!settled) worker.postMessage(message, transfer);
  };
  /** Counts bytes handed to the thread; its clock starts when it had nothing to do. */
  const handOver = (bytes: number) => {
    if (inFlight === 0) dog.progressed();
    inFlight += bytes;
    messagesInFlight += 1;
  };
  const batches = new TransferBatches(BATCH, (bytes) => {
    handOver(bytes.length);
    post({ type: "bytes", bytes }, [bytes.buffer as ArrayBuffer]);
  });
  // The thread's own answer ("done" or "error"), which may follow the watchdog's.
  let answer: (() => void) | undefined;
  const answered = new Promise<void>((resolve) => {
    answer = resolve;
  });
  worker.once("exit", () => answer?.());
  worker.once("error", () => answer?.());
  const outcome = new Promise<ThreadExtractResult>((resolve, reject) => {
    giveUp = reject;
    worker.on("message", (message: FromWorker) => {
      dog.progressed();
      if (message.type !== "taken") answer?.();
      if (message.type === "taken") {
        inFlight -= message.bytes;
        messagesInFlight -= 1;
        onTaken?.(message.bytes);
        if (message.returned !== undefined) batches.recycle(message.returned);
        if (inFlight <= MAX_IN_FLIGHT / 2 || messagesInFlight <= 1) wake();
      } else if (message.type === "done") {
        resolve(receivedResult(message.result));
      } else {
        reject(fromThreadError(message.error));
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
  // Whether the worker ended on its own (done, or its own error) before we sent "abort".
  let abortSent = false;
  let failedFirst = false;
  /** Ends the current wait for the source when the worker settles first (see below). */
  let stopWaiting: (() => void) | undefined;
  const finished = outcome.then(
    () => {
      settled = true;
      wake();
      stopWaiting?.();
    },
    () => {
      settled = true;
      failedFirst = dog.stalled || !abortSent;
      wake();
      stopWaiting?.();
    },
  );
  const abortWorker = () => {
    post({ type: "abort" });
    abortSent = true;
    dog.abortSent();
  };
  signal?.addEventListener("abort", abortWorker, { once: true });
  try {
    dog.start();
    const iterator = source[Symbol.asyncIterator]();
    try {
      for (;;) {
        // The worker may fail (an unsafe entry, a full disk) while the source is slow or
        // stalled: its error is the answer, at once, whatever the source does next.
        // Not Promise.race with `finished`: every race would leave a reaction on that
        // long-lived promise holding its result (the chunk) until the end, and a 545 MB
        // archive stayed in memory whole (nodejs/node#17469). One waiter slot instead.
        const pending = iterator.next();
        const next = await new Promise<IteratorResult<Uint8Array> | undefined>(
          (resolve, reject) => {
            stopWaiting = () => resolve(undefined);
            if (settled) resolve(undefined);
            pending.then(resolve, reject);
          },
        );
        stopWaiting = undefined;
        if (next === undefined) {
          pending.catch(() => {});
          // Not awaited: a stalled source must not hold the answer back. The caller aborts
          // the download, which settles the pending read.
          Promise.resolve()
            .then(() => iterator.return?.())
            .catch(() => {});
          break;
        }
        if (next.done === true) {
          batches.flush();
          if (inFlight === 0) dog.progressed();
          endPosted = true;
          post({ type: "end" });
          break;
        }
        const chunk = next.value;
        if (chunk.buffer instanceof SharedArrayBuffer) {
          // Read in place by the thread; bytes copied before must reach it first (order).
          batches.flush();
          handOver(chunk.length);
          post({ type: "bytes", bytes: chunk });
        } else batches.add(chunk);
        while (inFlight > MAX_IN_FLIGHT && messagesInFlight > 1 && !settled) {
          await new Promise<void>((resolve) => {
            wakeSender = resolve;
          });
        }
      }
    } catch (error) {
      // The source failed (network, abort): stop the worker. Its own failure, if it came
      // first, is the answer; otherwise the source's error is.
      abortWorker();
      await finished;
      if (failedFirst) await outcome;
      throw error;
    }
    try {
      const result = await outcome;
      // The thread may finish between an interrupt and its reading of it: an interrupted
      // extraction is never a success (found in review of the zip thread, same race).
      signal?.throwIfAborted();
      return result;
    } catch (error) {
      // An abort while the worker finishes: the worker's "aborted" is not the reason.
      if (!failedFirst) signal?.throwIfAborted();
      throw error;
    }
  } finally {
    dog.stop();
    signal?.removeEventListener("abort", abortWorker);
    const stuck = `the extraction thread of ${job.dataset}, writing under ${job.destination}`;
    if (dog.abandoned) abandonThread(worker, stuck);
    else if (dog.stalled) await endStalledThread(worker, answered, dog.graceMs, stuck);
    else await worker.terminate();
  }
}

function stallError(job: ExtractJob, stallTimeoutMs: number, waiting: number): DsfetchError {
  const what =
    waiting > 0
      ? `${waiting} bytes of the archive were waiting for it`
      : "it had every byte of the archive and had not finished";
  const cause =
    job.compression === "none"
      ? "the storage under the dataset is hung or extremely slow"
      : `the ${job.compression} decompressor stopped, or the storage under the dataset is hung or extremely slow`;
  return new DsfetchError(
    "STALLED",
    `${job.dataset}: the extraction made no progress for ${stallTimeoutMs / 1000} s (it took no input and wrote nothing; ${what})`,
    {
      dataset: job.dataset,
      hint: `nothing was published; ${cause}: check it and run again (DSFETCH_EXTRACT_STALL_TIMEOUT raises the bound, for storage that is just slow)`,
    },
  );
}
