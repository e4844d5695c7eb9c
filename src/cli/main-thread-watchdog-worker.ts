/**
 * Worker thread of the main-thread watchdog (main-thread-watchdog.ts): checks the main
 * thread's heartbeat, and once it has stood still for the bound, says so and ends the process
 * with SIGKILL (the only way out: the stuck main thread can run no handler, and a process
 * cannot exit while a thread is stuck in the kernel: finish.ts).
 */
import { writeSync } from "node:fs";
import { Worker, workerData } from "node:worker_threads";
import { DsfetchError } from "../errors.ts";
import { BeatWatch } from "./beat-watch.ts";
import { renderError } from "./render.ts";

const { memory, boundMs, checkMs, json } = workerData as {
  memory: SharedArrayBuffer;
  boundMs: number;
  checkMs: number;
  /** Also write the error as JSON on stdout (the command was run with --json). */
  json: boolean;
};
const beats = new Int32Array(memory, 0, 1);
const watch = new BeatWatch(boundMs, checkMs, Atomics.load(beats, 0), performance.now());

const timer = setInterval(() => {
  if (!watch.check(Atomics.load(beats, 0), performance.now())) return;
  clearInterval(timer);
  giveUp();
}, checkMs);

/** How long the last words may take to be written before the kill, at most. */
const WRITE_MS = 2000;

function giveUp(): void {
  const seconds = boundMs / 1000;
  const error = new DsfetchError(
    "STALLED",
    `dsfetch's main thread has not run for ${seconds} s: it is stuck in a system call (shared storage or a file that stopped answering) or in a loop. dsfetch ends itself with SIGKILL: exit status 137`,
    {
      hint: `nothing half-written was published; the lock goes stale and a later run cleans up what this one left. Check the storage (mount, server); DSFETCH_MAIN_THREAD_TIMEOUT (now ${seconds} s) is this bound`,
    },
  );
  const kill = () => process.kill(process.pid, "SIGKILL");
  // The writes below may block: stderr may be a file on the storage that stopped answering,
  // or a pipe nobody reads. The kill comes anyway, from a thread of its own. (Not through
  // the thread pool: on hung storage its threads are the ones stuck, found in review.)
  try {
    new Worker(`setTimeout(() => process.kill(${process.pid}, "SIGKILL"), ${WRITE_MS});`, {
      eval: true,
    });
  } catch {
    // No thread to be had: write, and hope the writes return.
  }
  // The machine-readable answer first: a consumer of --json reads stdout. Each write on its
  // own: a full pipe (Node's pipes are non-blocking: EAGAIN) loses that one only.
  if (json) writeQuietly(1, `${JSON.stringify({ error: error.toJSON() })}\n`);
  writeQuietly(2, renderError(error));
  kill();
}

function writeQuietly(fd: number, text: string): void {
  try {
    writeSync(fd, text);
  } catch {
    // Nothing better to do with it: the kill is what matters now.
  }
}
