/**
 * Ending an extraction thread (extract-in-worker.ts for tar, zip-in-worker.ts for zip) that
 * was told to stop, or that stopped making progress.
 */
import type { Worker } from "node:worker_threads";
import { DsfetchError } from "../errors.ts";
import { noteStuckThread } from "../util/stuck-threads.ts";

/**
 * How long, at most, the answer waits for the thread to stop once told to (after a stall, an
 * abort, a failed source). A thread blocked in a system call (a write to a hung NFS server)
 * cannot be stopped until the call returns: the caller gets its answer anyway, and the
 * thread is left to end when it can (the process cannot exit before it does: cli/finish.ts).
 */
export const STOP_GRACE_MS = 5_000;

/**
 * Ends a thread that stopped making progress, waiting for it only so long (see the grace).
 * It was sent "abort": given the time to act on it, it kills its decompressor program (a
 * thread terminated at once would leave that process behind).
 */
export async function endStalledThread(
  worker: Worker,
  answered: Promise<void>,
  graceMs: number,
  what: string,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), graceMs);
  });
  let ended = await Promise.race([answered.then(() => true), graceOver]);
  if (ended) ended = await Promise.race([worker.terminate().then(() => true), graceOver]);
  clearTimeout(timer);
  if (!ended) abandonThread(worker, what);
}

/**
 * A thread blocked in a system call: asked to end, not waited for, not keeping the event loop
 * alive, and noted (util/stuck-threads.ts): the process cannot exit normally while it is stuck.
 */
export function abandonThread(worker: Worker, what: string): void {
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  void worker.terminate();
  worker.unref();
  noteStuckThread(what, exited);
}

/** How a thread started ahead of its job ended before the job began, if it did. */
export interface EarlyEnd {
  /** The thread's error, or its exit, before `adopt()`. */
  readonly endedEarly: () => Error | undefined;
  /** Stops recording: the job's own listeners take over. */
  readonly adopt: () => void;
}

/**
 * Records a thread's "error" and "exit" until its job starts. A thread started ahead of its
 * job (so that its start-up overlaps a download) may die before anyone listens to it (a
 * module that fails to load, no memory); its events are not repeated, and the job would
 * wait for an answer that never comes.
 */
export function recordEarlyEnd(worker: Worker): EarlyEnd {
  let early: Error | undefined;
  const onError = (error: Error) => {
    early ??= error;
  };
  const onExit = (code: number) => {
    early ??= new Error(`exited with code ${code}`);
  };
  worker.on("error", onError);
  worker.on("exit", onExit);
  return {
    endedEarly: () => early,
    adopt: () => {
      worker.off("error", onError);
      worker.off("exit", onExit);
    },
  };
}

/** The answer for a thread that ended before its job (see recordEarlyEnd). */
export function threadStartError(what: string, early: Error, dataset: string): DsfetchError {
  return new DsfetchError("INTERNAL", `the ${what} thread failed to start: ${early.message}`, {
    dataset,
    hint: "this is a bug in dsfetch, or the process is short of memory; please report it",
    cause: early,
  });
}
