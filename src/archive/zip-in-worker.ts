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
import {
  abandonThread,
  type EarlyEnd,
  endStalledThread,
  recordEarlyEnd,
  STOP_GRACE_MS,
  threadStartError,
} from "./thread-ending.ts";
import { fromThreadError, type ThreadError } from "./thread-errors.ts";
import type { ExtractResult } from "./zip-extract.ts";
import type { ToZipWorker, ZipJob } from "./zip-worker.ts";

export type { ZipJob } from "./zip-worker.ts";

// In development the sources run as .ts (Node strips the types); built, they are .js.
const WORKER_FILE = new URL(
  import.meta.url.endsWith(".ts") ? "./zip-worker.ts" : "./zip-worker.js",
  import.meta.url,
);

type FromZipWorker =
  | { type: "done"; result: ExtractResult }
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
  const worker = new Worker(WORKER_FILE);
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
): Promise<ExtractResult> {
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
  let lastProgressAt = performance.now();
  const sinceProgress = () =>
    performance.now() - Math.max(lastProgressAt, (clock[0] ?? 0) - performance.timeOrigin);
  const graceMs = Math.min(STOP_GRACE_MS, stallTimeoutMs ?? STOP_GRACE_MS);
  let settled = false;
  /** The watchdog failed the extraction (before anything else did). */
  let stalled = false;
  /** Told to stop, the thread did not answer within the grace: not waited for. */
  let abandoned = false;
  let abortSentAt: number | undefined;
  let giveUp: ((error: unknown) => void) | undefined;
  let answer: (() => void) | undefined;
  const answered = new Promise<void>((resolve) => {
    answer = resolve;
  });
  worker.once("exit", () => answer?.());
  worker.once("error", () => answer?.());
  const outcome = new Promise<ExtractResult>((resolve, reject) => {
    giveUp = reject;
    worker.on("message", (message: FromZipWorker) => {
      answer?.();
      if (message.type === "done") resolve(message.result);
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
    abortSentAt ??= performance.now();
  };
  signal?.addEventListener("abort", abortWorker, { once: true });
  const tickMs = Math.max(10, Math.min(1000, graceMs / 4, (stallTimeoutMs ?? Infinity) / 4));
  let lastTickAt = performance.now();
  const tick = () => {
    const now = performance.now();
    const sinceTick = now - lastTickAt;
    lastTickAt = now;
    if (settled) return;
    if (sinceTick > tickMs + Math.min(graceMs, stallTimeoutMs ?? graceMs) / 2) {
      // This turn comes far too late: the whole process was stopped or frozen (Ctrl-Z,
      // `docker pause`, a cgroup freeze), or this thread was busy. The extraction thread
      // could not show progress either: its clock starts again now.
      lastProgressAt = now;
      if (abortSentAt !== undefined) abortSentAt = now;
      return;
    }
    if (abortSentAt !== undefined) {
      // Told to stop, the thread does not answer: blocked in a system call. The abort's
      // reason is the answer all the same.
      if (now - abortSentAt < graceMs) return;
      abandoned = true;
      giveUp?.(signal?.reason ?? new Error("extraction aborted"));
      return;
    }
    const stalledNow = () =>
      !settled &&
      abortSentAt === undefined &&
      stallTimeoutMs !== undefined &&
      sinceProgress() >= stallTimeoutMs;
    if (!stalledNow()) return;
    // Timers run before the messages that arrived meanwhile: after this thread was busy
    // (longer than the bound), "done" may be waiting. Decide after it.
    setImmediate(() => {
      if (!stalledNow()) return;
      stalled = true;
      giveUp?.(stallError(job.dataset, stallTimeoutMs ?? 0));
      abortWorker();
    });
  };
  const watchdog = setInterval(tick, tickMs);
  try {
    const result = await outcome;
    // The thread may finish between an interrupt and its reading of it (it looks between
    // entries): an interrupted extraction is never a success, nothing may be published.
    signal?.throwIfAborted();
    return result;
  } catch (error) {
    // Interrupted: the interrupt's reason is the answer (not the thread's "aborted"); only a
    // stall, decided before it, stays the answer.
    if (!stalled) signal?.throwIfAborted();
    throw error;
  } finally {
    clearInterval(watchdog);
    signal?.removeEventListener("abort", abortWorker);
    if (abandoned) abandonThread(worker);
    else if (stalled) await endStalledThread(worker, answered, graceMs);
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
