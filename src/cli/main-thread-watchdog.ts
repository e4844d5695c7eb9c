/**
 * A last line against hangs of the main thread: a worker thread watches its heartbeat
 * (util/main-thread-beat.ts) and, once it has stood still for DSFETCH_MAIN_THREAD_TIMEOUT,
 * says so and ends the process (exit status 137).
 *
 * Why: a synchronous call on storage that stopped answering (a folder dataset's file writes,
 * the read-only walk before publish: fast calls on local disks, so they are synchronous)
 * blocks the whole main thread, and then nothing runs: no timer, no watchdog of the download,
 * no SIGTERM handler. Measured on a frozen FUSE mount, a folder written one file at a time:
 * the main thread in `request_wait_answer`, nothing printed, SIGTERM ignored for as long as
 * the mount stayed frozen (with this: STALLED after the bound). Correctness does not suffer
 * from the kill (publishing is one atomic rename; partial data lives only in a private
 * directory that a later run removes; the lock goes stale), and a job that would have waited
 * for good gets an answer.
 */
import { Worker } from "node:worker_threads";
import { beatInto, mainThreadAlive, onSyncStorageCalls } from "../util/main-thread-beat.ts";
import { workerFile } from "../util/worker-file.ts";
import { WORKER_RESOURCE_LIMITS } from "../util/worker-limits.ts";

const WORKER_FILE = workerFile("main-thread-watchdog-worker", import.meta.url);

export interface MainThreadWatchdog {
  /** Stops watching (before handing the process over: `run`'s command). */
  stop(): void;
  /** Settles once the watching thread runs (or could not start). */
  readonly running: Promise<void>;
}

export interface WatchdogOptions {
  /** How long the heartbeat may stand still. */
  readonly boundMs: number;
  /** Also write the error as JSON on stdout. */
  readonly json: boolean;
}

let current: MainThreadWatchdog | undefined;

/**
 * Starts the watchdog once the main thread is about to make synchronous calls on storage
 * (util/main-thread-beat.ts: a thread is not free, so not for every command).
 */
export function armMainThreadWatchdog(options: WatchdogOptions): void {
  onSyncStorageCalls(() => startMainThreadWatchdog(options));
}

export function startMainThreadWatchdog(options: WatchdogOptions): MainThreadWatchdog {
  current?.stop();
  const memory = new SharedArrayBuffer(4);
  // Checked often enough for the bound (a test's 1 s), at most once a second.
  const checkMs = Math.max(50, Math.min(1000, Math.floor(options.boundMs / 10)));
  let worker: Worker;
  try {
    worker = new Worker(WORKER_FILE, {
      workerData: { memory, boundMs: options.boundMs, checkMs, json: options.json },
      resourceLimits: WORKER_RESOURCE_LIMITS,
    });
  } catch (error) {
    // No thread to be had (a pids limit, no memory): the command goes on unwatched, and
    // says so (found in review: the throw failed a dataset that had downloaded).
    unwatched(error);
    return { stop() {}, running: Promise.resolve() };
  }
  worker.unref();
  worker.on("error", unwatched);
  const running = new Promise<void>((resolve) => {
    worker.once("online", resolve);
    worker.once("error", () => resolve());
  });
  beatInto(memory);
  const beat = setInterval(mainThreadAlive, checkMs);
  beat.unref();
  const watchdog: MainThreadWatchdog = {
    running,
    stop() {
      clearInterval(beat);
      beatInto(undefined);
      void worker.terminate();
      if (current === watchdog) current = undefined;
    },
  };
  current = watchdog;
  return watchdog;
}

function unwatched(error: unknown): void {
  const why = error instanceof Error ? error.message : String(error);
  process.stderr.write(
    `dsfetch: warning: the main thread is not watched (its watchdog thread did not start: ${why}); a call stuck on hung storage will hang this process\n`,
  );
}

/** Stops the watchdog started last, if any, and disarms it. */
export function stopMainThreadWatchdog(): void {
  onSyncStorageCalls(undefined);
  current?.stop();
}
