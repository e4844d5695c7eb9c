/**
 * Threads of this process known to be stuck in a system call (storage that stopped
 * answering): process-wide, because what it means is process-wide.
 *
 * Why it matters: a Node process cannot exit while one of its threads is stuck in the kernel.
 * process.exit (and the end of the event loop) waits for every worker thread and every thread
 * of libuv's pool to finish; measured here, a worker and a pool thread each blocked opening a
 * FIFO kept `exit` waiting for good. dsfetch gives up on such a thread (extraction threads
 * after STOP_GRACE_MS, the clean-up after a stall after 5 s) and reports its error; the CLI
 * then replaces itself with a program that exits with its code (cli/finish.ts: execve; SIGKILL
 * where it cannot) rather than hang after saying it failed.
 * A note goes away when the work it stands for ends after all (the storage came back): the
 * process can then exit normally (found in review: thawed after the grace, it still ended
 * with SIGKILL).
 */

const notes = new Map<number, string>();
let nextNote = 0;

/**
 * Records that work blocked on `what` was given up on; `ended`, when given, settles when
 * that work ends after all, and removes the note.
 */
export function noteStuckThread(what: string, ended?: Promise<unknown>): void {
  const id = nextNote++;
  notes.set(id, what);
  ended?.then(
    () => notes.delete(id),
    () => notes.delete(id),
  );
}

/** What the work still stuck was blocked on, oldest first; empty when none. */
export function stuckThreads(): readonly string[] {
  return [...notes.values()];
}
