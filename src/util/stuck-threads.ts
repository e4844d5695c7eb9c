/**
 * Threads of this process known to be stuck in a system call (storage that stopped
 * answering): process-wide, because what it means is process-wide.
 *
 * Why it matters: a Node process cannot exit while one of its threads is stuck in the kernel.
 * process.exit (and the end of the event loop) waits for every worker thread and every thread
 * of libuv's pool to finish; measured here, a worker and a pool thread each blocked opening a
 * FIFO kept `exit` waiting for good. dsfetch gives up on such a thread (extraction threads
 * after STOP_GRACE_MS, the clean-up after a stall after 5 s) and reports its error; the CLI
 * then ends itself with SIGKILL (cli/finish.ts) rather than hang after saying it failed.
 */

const reasons: string[] = [];

/** Records that a thread was given up on, blocked on `what` (for the last message). */
export function noteStuckThread(what: string): void {
  reasons.push(what);
}

/** What the threads given up on were blocked on, oldest first; empty when none. */
export function stuckThreads(): readonly string[] {
  return reasons;
}
