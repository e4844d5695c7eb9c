/**
 * How the dsfetch process ends once main() has answered: with its exit code, or, when a
 * thread was given up on while stuck in a system call (util/stuck-threads.ts), with SIGKILL.
 *
 * Why: a Node process cannot exit while one of its threads is stuck in the kernel (exit waits
 * for every worker thread and every thread of libuv's pool: test/cli/finish.test.ts shows it).
 * After hung storage, dsfetch has already said what failed and what it left behind; hanging
 * after that would hold a job (and its GPUs) forever, the worst outcome. So it says why, and
 * ends itself: exit status 137 instead of its documented code (README "Exit codes").
 */
import { stuckThreads } from "../util/stuck-threads.ts";

export interface Ending {
  /** Where the last word goes (the CLI's stderr). */
  readonly stderr: { write(text: string): unknown };
  /** Ends the process at once (default: SIGKILL to itself). */
  readonly kill?: (() => void) | undefined;
}

export function finishProcess(code: number, ending: Ending): void {
  const stuck = stuckThreads();
  if (stuck.length === 0) {
    process.exitCode = code;
    return;
  }
  ending.stderr.write(
    `dsfetch: gave up on work stuck in system calls on storage that stopped answering (${stuck.join("; ")}). A Node process cannot exit while a thread is stuck, so dsfetch ends itself with SIGKILL: exit status 137 (its own answer, above, was exit code ${code}).\n`,
  );
  (ending.kill ?? (() => process.kill(process.pid, "SIGKILL")))();
}
