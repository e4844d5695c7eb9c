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
 * (`process.execve`, Node >= 22.15) with a Node that only exits with dsfetch's code: execve
 * ends the process's other threads, as a kill would, and keeps its PID. Until 2026-12-07 it
 * ended itself with SIGKILL, exit status 137: a training command that succeeded under `run`
 * while the lease release hung on dead storage made the job fail as if killed for memory.
 * SIGKILL is still the way out where execve is missing or refused (older Node, a
 * single-executable build). Either way the kernel completes the end once the stuck calls can
 * be interrupted: at once for NFS (its waits are killable), only when the daemon answers or
 * the mount is aborted for FUSE.
 */
import { accessSync, constants } from "node:fs";
import { isSea } from "node:sea";
import { stuckThreads } from "../util/stuck-threads.ts";

interface Drainable {
  write(text: string, done: () => void): unknown;
}

export interface Ending {
  /** Where the last word goes (the CLI's stderr). */
  readonly stderr: Drainable;
  /** The other output to let drain before the kill (the CLI's stdout). */
  readonly stdout?: Drainable | undefined;
  /**
   * Replaces the process with one that exits with `code` (default: process.execve of Node
   * itself); returns only when it cannot, and says why not (undefined: not available here).
   */
  readonly replace?: ((code: number) => Error | undefined) | undefined;
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
  const cause = `dsfetch: gave up on work stuck in system calls on storage that stopped answering (${stuck.join("; ")}). A Node process cannot exit while a thread is stuck`;
  const killLine = (why: string) =>
    `dsfetch: ${why}: it ends itself with SIGKILL instead, exit status 137 (its own answer, above, was exit code ${code}).\n`;
  const refusal = ending.replace === undefined ? replacementRefusal() : undefined;
  await say(
    ending,
    refusal === undefined
      ? `${cause}, so dsfetch replaces itself with a process that exits with its exit code, ${code}.\n`
      : `${cause}, and this dsfetch cannot replace itself (${refusal.message}): it ends itself with SIGKILL, exit status 137 (its own answer, above, was exit code ${code}).\n`,
  );
  if (refusal === undefined) {
    const failed = (ending.replace ?? replaceWithExit)(code);
    // Still here: execve failed (Node >= 26 throws; older ones abort). The kill is left.
    await say(
      ending,
      killLine(`could not replace itself (${failed?.message ?? "execve returned"})`),
    );
  }
  (ending.kill ?? (() => process.kill(process.pid, "SIGKILL")))();
}

/** Writes `line` to stderr and lets stdout drain, within DRAIN_MS. */
async function say(ending: Ending, line: string): Promise<void> {
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
}

/** Why this process cannot replace itself with a plain Node; undefined when it can. */
function replacementRefusal(): Error | undefined {
  if (typeof process.execve !== "function") return new Error("this Node has no process.execve");
  // A single-executable build runs its own script whatever the arguments.
  if (isSea()) return new Error("a single-executable build cannot run as plain Node");
  try {
    // On a failed execve, Node before 26 aborts instead of throwing (nodejs/node#62878).
    accessSync(process.execPath, constants.X_OK);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
  return undefined;
}

/**
 * execve of this Node with `-e process.exit(code)`: the new program holds none of the stuck
 * threads and exits at once with the code (~40 ms). Its environment is empty but for the
 * loader's path, so NODE_OPTIONS (a --require of the job's) does not run in it. Returns only
 * when execve failed, with why.
 */
function replaceWithExit(code: number): Error | undefined {
  const env: NodeJS.ProcessEnv = {};
  if (process.env.LD_LIBRARY_PATH !== undefined) env.LD_LIBRARY_PATH = process.env.LD_LIBRARY_PATH;
  // An exit status is 0-255; anything else here would be a bug, said as one (1).
  const status = Number.isInteger(code) && code >= 0 && code <= 255 ? code : 1;
  try {
    process.execve?.(process.execPath, [process.execPath, "-e", `process.exit(${status})`], env);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
  return undefined;
}
