/**
 * Signals one child process, and never anything else.
 *
 * Why not `child.kill()`: when `spawn` fails for lack of file descriptors (EMFILE, ENFILE),
 * Node keeps the child's handle until its "error" event (a tick later) but the handle has no
 * process: its pid is 0. A `kill()` in between asks the kernel for kill(0, signal), which is
 * every process in our process group: measured on 2026-12-05, decompress() out of file
 * descriptors sent SIGKILL to the whole group (3 runs in 5): dsfetch, the shell that started
 * it, the training job beside it in a container, and the CI run that was testing it.
 * `child.pid` is only set once the spawn worked, so it is what is checked.
 */
import type { ChildProcess } from "node:child_process";

/** The child was started (a pid) and has not exited. */
export function childRunning(child: ChildProcess): boolean {
  const { pid } = child;
  if (pid === undefined || !Number.isInteger(pid) || pid <= 0) return false;
  return child.exitCode === null && child.signalCode === null;
}

/** Sends `signal` to `child` if it was started and has not exited; false when nothing was sent. */
export function killChild(child: ChildProcess, signal: NodeJS.Signals): boolean {
  return childRunning(child) && child.kill(signal);
}
