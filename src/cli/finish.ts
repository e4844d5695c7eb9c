/**
 * How the dsfetch process ends once main() has answered: with its exit code, or, when work
 * was given up on while stuck in a system call (util/stuck-threads.ts), with SIGKILL.
 *
 * Why: a Node process cannot exit while one of its threads is stuck in the kernel (exit waits
 * for every worker thread and every thread of libuv's pool: test/cli/finish.test.ts shows it).
 * After hung storage, dsfetch has already said what failed and what it left behind; hanging
 * after that would hold a job (and its GPUs) until the storage answers, the worst outcome. So
 * it says why, lets its output drain (writes to a pipe are asynchronous: killed at once, a
 * large --json answer was cut at 64 KiB, found in review), and ends itself: exit status 137
 * instead of its documented code (README "Exit codes"). The kernel completes the kill once the
 * stuck calls can be interrupted: at once for NFS (its waits are killable), only when the
 * daemon answers or the mount is aborted for FUSE.
 */
import { stuckThreads } from "../util/stuck-threads.ts";

interface Drainable {
  write(text: string, done: () => void): unknown;
}

export interface Ending {
  /** Where the last word goes (the CLI's stderr). */
  readonly stderr: Drainable;
  /** The other output to let drain before the kill (the CLI's stdout). */
  readonly stdout?: Drainable | undefined;
  /** Ends the process at once (default: SIGKILL to itself). */
  readonly kill?: (() => void) | undefined;
}

/** How long the output may take to drain before the kill, at most. */
const DRAIN_MS = 2000;

export async function finishProcess(code: number, ending: Ending): Promise<void> {
  const stuck = stuckThreads();
  if (stuck.length === 0) {
    process.exitCode = code;
    return;
  }
  const line = `dsfetch: gave up on work stuck in system calls on storage that stopped answering (${stuck.join("; ")}). A Node process cannot exit while a thread is stuck, so dsfetch ends itself with SIGKILL: exit status 137 (its own answer, above, was exit code ${code}).\n`;
  const drained = (stream: Drainable, text: string) =>
    new Promise<void>((resolve) => stream.write(text, () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all([
      drained(ending.stderr, line),
      ending.stdout === undefined ? undefined : drained(ending.stdout, ""),
    ]),
    new Promise((resolve) => {
      timer = setTimeout(resolve, DRAIN_MS);
    }),
  ]);
  clearTimeout(timer);
  (ending.kill ?? (() => process.kill(process.pid, "SIGKILL")))();
}
