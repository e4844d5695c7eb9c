/**
 * How the dsfetch process ends once main() has answered: with its exit code, even when work
 * was given up on while stuck in a system call (util/stuck-threads.ts).
 *
 * Why: a Node process cannot exit while one of its threads is stuck in the kernel (exit waits
 * for every worker thread and every thread of libuv's pool: test/cli/finish.test.ts shows it).
 * After hung storage, dsfetch has already said what failed and what it left behind; hanging
 * after that would hold a job (and its GPUs) until the storage answers, the worst outcome. So
 * it says why, lets its output drain (writes to a pipe are asynchronous: killed at once, a
 * large --json answer was cut at 64 KiB, found in review), and replaces itself
 * (`process.execve`, Node >= 22.15) with a program that only exits with dsfetch's code
 * (`/bin/sh -c 'exit N'`): execve ends the process's other threads, as a kill would, and keeps
 * its PID. Until 2026-12-07 it ended itself with SIGKILL, exit status 137: a training command
 * that succeeded under `run` while the lease release hung on dead storage made the job fail
 * as if killed for memory. SIGKILL is still the way out where execve is missing (Node before
 * 22.15, 23.0-23.10) or no program to become can be run. Either way the kernel completes the
 * end once the stuck calls can be interrupted: at once for NFS (its waits are killable), only
 * when the daemon answers or the mount is aborted for FUSE.
 */
import { isSea } from "node:sea";
import { EXIT_CODES } from "../errors.ts";
import { executable } from "../util/executable.ts";
import { stuckThreads } from "../util/stuck-threads.ts";

interface Drainable {
  write(text: string, done: () => void): unknown;
}

export interface Ending {
  /** Where the last word goes (the CLI's stderr). */
  readonly stderr: Drainable;
  /** The other output to let drain before the end (the CLI's stdout). */
  readonly stdout?: Drainable | undefined;
  /**
   * Replaces the process with one that exits with `status` (default: replaceWithExit);
   * returns only when that failed, with why.
   */
  readonly replace?: ((status: number) => Error) | undefined;
  /** Where the shell to become is looked for (default /bin/sh; tests give a missing one). */
  readonly shell?: string | undefined;
  /** Ends the process at once (default: SIGKILL to itself). */
  readonly kill?: (() => void) | undefined;
}

/** How long the output may take to drain before the end, at most. */
const DRAIN_MS = 2000;

export async function finishProcess(code: number, ending: Ending): Promise<void> {
  const stuck = stuckThreads();
  if (stuck.length === 0) {
    process.exitCode = code;
    return;
  }
  const status = exitStatus(code);
  const cause = `dsfetch: gave up on work stuck in system calls on storage that stopped answering (${stuck.join("; ")}). A Node process cannot exit while a thread is stuck`;
  const killLine = (why: string) =>
    `dsfetch: ${why}: it ends itself with SIGKILL instead, exit status 137 (its own answer, above, was exit code ${status}).\n`;
  const kill = ending.kill ?? killSelf;
  const program = ending.replace === undefined ? exitProgram(ending.shell) : undefined;
  if (program instanceof Error) {
    await say(
      ending,
      `${cause}, and this dsfetch cannot replace itself (${program.message}): it ends itself with SIGKILL, exit status 137 (its own answer, above, was exit code ${status}).\n`,
    );
    restoreBlockingStdio(true);
    kill();
    return;
  }
  const stdoutDrained = await say(
    ending,
    `${cause}, so dsfetch replaces itself with a process that exits with its exit code, ${status}.\n`,
  );
  // What did not drain is lost with the process: a cut answer must not end in success
  // (review, 2026-12-07). Standard output only: stderr is where this very notice goes, and a
  // slow log collector must not turn a success into a failure.
  let final = status;
  if (!stdoutDrained) {
    final = status === 0 ? EXIT_CODES.STORAGE : status;
    await say(
      ending,
      `dsfetch: its standard output did not drain within ${DRAIN_MS / 1000} s, and what was not written is lost: exit code ${final}.\n`,
    );
  }
  const failed = program === undefined ? ending.replace?.(final) : replaceWithExit(final, program);
  await say(ending, killLine(`could not replace itself (${failed?.message ?? "no way to"})`));
  restoreBlockingStdio(true);
  kill();
}

/**
 * Ends the process now with `code`, for a caller that cannot wait: a second interrupt, which
 * used process.exit. That waits for a thread stuck in a system call for good, given up on or
 * not yet (review, 2026-12-07): so what it runs first, the 'exit' listeners (proper-lockfile
 * removes the locks this process holds), runs here, then the execve. Those listeners call the
 * storage, so they are skipped when work on it is already noted stuck. Without execve:
 * process.exit as before (SIGKILL when work is noted stuck).
 */
export function endNow(code: number): void {
  const status = exitStatus(code);
  const stuck = stuckThreads().length > 0;
  const program = exitProgram();
  if (program instanceof Error) {
    if (stuck) {
      restoreBlockingStdio(true);
      killSelf();
    }
    process.exit(status);
  }
  process.exitCode = status;
  if (!stuck) {
    try {
      process.emit("exit", status);
    } catch {
      // A listener's failure must not keep the process from ending.
    }
  }
  replaceWithExit(status, program);
  restoreBlockingStdio(true);
  killSelf();
}

function killSelf(): void {
  process.kill(process.pid, "SIGKILL");
}

/** An exit status (0-255) for `code`; anything else would be a bug, said as one (1). */
function exitStatus(code: number): number {
  return Number.isInteger(code) && code >= 0 && code <= 255 ? code : EXIT_CODES.INTERNAL;
}

/**
 * Writes `line` to stderr and lets stdout drain, within DRAIN_MS in all; whether stdout
 * drained.
 */
async function say(ending: Ending, line: string): Promise<boolean> {
  const drained = (stream: Drainable, text: string) =>
    new Promise<void>((resolve) => stream.write(text, () => resolve()));
  let stdoutDrained = ending.stdout === undefined;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all([
      drained(ending.stderr, line),
      ending.stdout === undefined
        ? undefined
        : drained(ending.stdout, "").then(() => {
            stdoutDrained = true;
          }),
    ]),
    new Promise((resolve) => {
      timer = setTimeout(resolve, DRAIN_MS);
    }),
  ]);
  clearTimeout(timer);
  return stdoutDrained;
}

interface Program {
  readonly file: string;
  /** Its arguments, argv[0] first, for an exit with `status`. */
  readonly args: (status: number) => string[];
  readonly env: NodeJS.ProcessEnv;
}

/**
 * What to become: `/bin/sh -c 'exit N'` (on the machine's own disk: this Node may live on the
 * storage that stopped answering, an NFS home's nvm or conda, where looking at it would hang
 * the main thread; review, 2026-12-07), else this Node with `-e` (an image without a shell).
 * Looked at before the execve: on a failed execve, Node before 26 aborts (SIGABRT, exit 134)
 * instead of throwing (nodejs/node#62878). An environment of HOME only: the job's NODE_OPTIONS
 * (a --require) does not run again, and a shell does not look its user up for a HOME.
 */
function exitProgram(shell = "/bin/sh"): Program | Error {
  if (typeof process.execve !== "function") {
    return new Error("this Node has no process.execve: Node 22.15 or later has it");
  }
  if (executable(shell)) {
    return { file: shell, args: (status) => ["sh", "-c", `exit ${status}`], env: { HOME: "/" } };
  }
  // A single-executable build runs its own script whatever the arguments.
  if (isSea()) return new Error(`no ${shell}, and a single-executable build cannot run as Node`);
  if (!executable(process.execPath))
    return new Error(`neither ${shell} nor ${process.execPath} runs`);
  const env: NodeJS.ProcessEnv = { HOME: "/" };
  if (process.env.LD_LIBRARY_PATH !== undefined) env.LD_LIBRARY_PATH = process.env.LD_LIBRARY_PATH;
  const args = (status: number) => [process.execPath, "-e", `process.exit(${status})`];
  return { file: process.execPath, args, env };
}

/**
 * Sets the standard streams' descriptors blocking (true) or not. libuv made the pipes and
 * terminals among them non-blocking, which a normal exit undoes and execve or a kill does
 * not: the shell or job wrapper sharing them then met EAGAIN on its next write or read
 * (review, 2026-12-07). A stream already destroyed (stdin at its end, stdout after EPIPE) has
 * no descriptor left to set.
 */
function restoreBlockingStdio(blocking: boolean): void {
  for (const name of ["stdin", "stdout", "stderr"] as const) {
    try {
      const handle = (
        process[name] as unknown as { _handle?: { setBlocking?: (on: boolean) => unknown } }
      )._handle;
      handle?.setBlocking?.(blocking);
    } catch {
      // Nothing to restore.
    }
  }
}

/** execve of `program`, its standard streams blocking first; returns only when it failed. */
function replaceWithExit(status: number, program: Program): Error {
  restoreBlockingStdio(true);
  try {
    process.execve?.(program.file, program.args(status), program.env);
  } catch (error) {
    // Still here (Node >= 26 throws): non-blocking again, or the next write to a full pipe
    // would block this thread before the kill (review, 2026-12-07).
    restoreBlockingStdio(false);
    return error instanceof Error ? error : new Error(String(error));
  }
  restoreBlockingStdio(false);
  return new Error(`execve returned (exit code ${status})`);
}
