/**
 * Zip extraction on a worker thread (zip-worker.ts), watched from this one.
 *
 * Why: the zip extractor writes with synchronous calls. On the main thread a write to a hung
 * NFS server froze the whole process until the server came back: no stall error, no
 * interrupt, no progress, and every other worker waiting on the dataset's lock waited too.
 * On its own thread the extraction can hang while this thread still sees it: with no
 * progress for `stallTimeoutMs` it fails with STALLED (the tar path's watchdog does the
 * same: extract-in-worker.ts), and an interrupt is answered after at most the grace even if
 * the thread cannot stop.
 */
import { Worker } from "node:worker_threads";
import { DsfetchError } from "../errors.ts";
import { workerFile } from "../util/worker-file.ts";
import { WORKER_RESOURCE_LIMITS } from "../util/worker-limits.ts";
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
import type { ToZipWorker, ZipJob } from "./zip-worker.ts";

export type { ZipJob } from "./zip-worker.ts";

const WORKER_FILE = workerFile("zip-worker", import.meta.url);

type FromZipWorker =
  | { type: "done"; result: PostedExtractResult }
  | { type: "error"; error: ThreadError };

/** A zip extraction thread started ahead of its job (startZipThread). */
export interface ZipThread extends EarlyEnd {
  readonly worker: Worker;
}

/**
 * Starts a zip extraction thread before its job is known, so that its start-up (a thread
 * and the extraction modules, ~0.1 s) overlaps the archive's download instead of following
 * it. Give it to extractZipInWorker (`thread`), which ends it, or end it with
 * `thread.worker.terminate()`.
 */
export function startZipThread(): ZipThread {
  const worker = new Worker(WORKER_FILE, { resourceLimits: WORKER_RESOURCE_LIMITS });
  return { worker, ...recordEarlyEnd(worker) };
}

export interface ZipInWorkerOptions {
  readonly signal?: AbortSignal | undefined;
  /** Fail with STALLED when the extraction makes no progress for this long. Default: no bound. */
  readonly stallTimeoutMs?: number | undefined;
  /** A thread started ahead (startZipThread); default: one started now. */
  readonly thread?: ZipThread | undefined;
}

/**
 * Extracts the zip archive at `job.zipPath` into `job.destination` on a worker thread.
 * Rejects with the extractor's DsfetchError, STALLED, or the signal's reason; the thread is
 * gone (or, blocked in a system call, abandoned) when the promise settles.
 */
export async function extractZipInWorker(
  job: ZipJob,
  options: ZipInWorkerOptions = {},
): Promise<ThreadExtractResult> {
  const { signal, stallTimeoutMs } = options;
  const thread = options.thread ?? startZipThread();
  const { worker } = thread;
  if (signal?.aborted === true) {
    await worker.terminate();
    signal.throwIfAborted();
  }
  const early = thread.endedEarly();
  if (early !== undefined) {
    await worker.terminate();
    throw threadStartError("zip extraction", early, job.dataset);
  }
  // From here the job's own listeners (below, in this same turn) take the thread's events.
  thread.adopt();
  // The thread sets it to now (ms since the epoch) whenever the extraction moves on.
  const clock = new Float64Array(new SharedArrayBuffer(8));
  try {
    worker.postMessage({
      type: "job",
      job,
      clock: clock.buffer as SharedArrayBuffer,
    } satisfies ToZipWorker);
  } catch (error) {
    // A job that cannot be cloned: the thread would otherwise keep the process alive.
    await worker.terminate();
    throw error;
  }
  let settled = false;
  let giveUp: ((error: unknown) => void) | undefined;
  // The whole job is the thread's work from now until it answers.
  const dog = new ThreadWatchdog({
    clock,
    stallTimeoutMs,
    settled: () => settled,
    hasWork: () => true,
    onStall: () => {
      giveUp?.(stallError(job.dataset, stallTimeoutMs ?? 0));
      abortWorker();
    },
    // Told to stop, the thread does not answer: the abort's reason is the answer all the same.
    onAbandon: () => giveUp?.(signal?.reason ?? new Error("extraction aborted")),
  });
  let answer: (() => void) | undefined;
  const answered = new Promise<void>((resolve) => {
    answer = resolve;
  });
  worker.once("exit", () => answer?.());
  worker.once("error", () => answer?.());
  const outcome = new Promise<ThreadExtractResult>((resolve, reject) => {
    giveUp = reject;
    worker.on("message", (message: FromZipWorker) => {
      answer?.();
      if (message.type === "done") resolve(receivedResult(message.result));
      else reject(fromThreadError(message.error));
    });
    worker.on("error", (error) =>
      reject(
        new DsfetchError("INTERNAL", `the zip extraction thread failed: ${error.message}`, {
          dataset: job.dataset,
          hint: "this is a bug in dsfetch; please report it with the command you ran",
          cause: error,
        }),
      ),
    );
    worker.on("exit", (code) =>
      reject(
        new DsfetchError(
          "INTERNAL",
          `the zip extraction thread exited (code ${code}) before the end`,
          {
            dataset: job.dataset,
            hint: "this is a bug in dsfetch, or the process is short of memory; please report it",
          },
        ),
      ),
    );
  });
  void outcome.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  const abortWorker = () => {
    if (!settled) worker.postMessage({ type: "abort" } satisfies ToZipWorker);
    dog.abortSent();
  };
  signal?.addEventListener("abort", abortWorker, { once: true });
  dog.start();
  try {
    const result = await outcome;
    // The thread may finish between an interrupt and its reading of it (it looks between
    // entries): an interrupted extraction is never a success, nothing may be published.
    signal?.throwIfAborted();
    return result;
  } catch (error) {
    // Interrupted: the interrupt's reason is the answer (not the thread's "aborted"); only a
    // stall, decided before it, stays the answer.
    if (!dog.stalled) signal?.throwIfAborted();
    throw error;
  } finally {
    dog.stop();
    signal?.removeEventListener("abort", abortWorker);
    const stuck = `the zip extraction thread of ${job.dataset}, writing under ${job.destination}`;
    if (dog.abandoned) abandonThread(worker, stuck);
    else if (dog.stalled) await endStalledThread(worker, answered, dog.graceMs, stuck);
    else await worker.terminate();
  }
}

function stallError(dataset: string, stallTimeoutMs: number): DsfetchError {
  return new DsfetchError(
    "STALLED",
    `${dataset}: the zip extraction made no progress for ${stallTimeoutMs / 1000} s (no entry written or read)`,
    {
      dataset,
      hint: "nothing was published; the storage under the dataset is hung or extremely slow: check it and run again (DSFETCH_EXTRACT_STALL_TIMEOUT raises the bound, for storage that is just slow)",
    },
  );
}
