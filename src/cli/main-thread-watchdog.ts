/**
 * A last line against hangs of the main thread: a worker thread watches its heartbeat
 * (util/main-thread-beat.ts) and, once it has stood still for DSFETCH_EXTRACT_STALL_TIMEOUT,
 * says so and ends the process (exit status 137).
 *
 * Why: a synchronous call on storage that stopped answering (a folder dataset's file writes,
 * the read-only walk before publish: fast calls on local disks, so they are synchronous)
 * blocks the whole main thread, and then nothing runs: no timer, no watchdog of the download,
 * no SIGTERM handler. Measured on a frozen FUSE mount (session 14): dsfetch printed nothing
 * and ignored SIGTERM for as long as the mount stayed frozen. Correctness does not suffer
 * from the kill (publishing is one atomic rename; partial data lives only in a private
 * directory that a later run removes; the lock goes stale), and a job that would have waited
 * for good gets an answer.
 */
import { Worker } from "node:worker_threads";
import { beatInto, mainThreadAlive, onSyncStorageCalls } from "../util/main-thread-beat.ts";

const WORKER_FILE = new URL(
  import.meta.url.endsWith(".ts")
    ? "./main-thread-watchdog-worker.ts"
    : "./main-thread-watchdog-worker.js",
  import.meta.url,
);

export interface MainThreadWatchdog {
  /** Stops watching (before handing the process over: `run`'s command). */
  stop(): void;
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
  beatInto(memory);
  const beat = setInterval(mainThreadAlive, checkMs);
  beat.unref();
  const worker = new Worker(WORKER_FILE, {
    workerData: { memory, boundMs: options.boundMs, checkMs, json: options.json },
  });
  worker.unref();
  // A watchdog that cannot start must not take the command down with it (tested: it starts,
  // from dist/ and from the sources).
  worker.on("error", () => {});
  const watchdog: MainThreadWatchdog = {
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

/** Stops the watchdog started last, if any, and disarms it. */
export function stopMainThreadWatchdog(): void {
  onSyncStorageCalls(undefined);
  current?.stop();
}
