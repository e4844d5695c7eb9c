/**
 * What SIGINT/SIGTERM/SIGHUP/SIGQUIT do depends on the phase: while staging, the first one
 * aborts cleanly (temporary data removed, locks released, nothing half-published) and a
 * second one exits at once; while `run` runs the job's command, they are forwarded to it.
 * SIGUSR1 and SIGUSR2 are forwarded to a running command and otherwise ignored.
 */
import type { ChildProcess } from "node:child_process";
import { constants } from "node:os";
import { childRunning, killChild } from "../util/kill-child.ts";
import { endNow } from "./finish.ts";
import { commandGotTerminalSignal } from "./terminal-foreground.ts";

/**
 * Every signal dsfetch handles. SIGQUIT, SIGUSR1 and SIGUSR2 are in since 2026-12-05 (review):
 * unhandled, SIGQUIT (Ctrl-\) and SIGUSR2 killed dsfetch and left `run`'s command running
 * with no parent, its exit code lost and its leases those of a dead process (prune and
 * refresh may then touch data it still reads); SIGUSR1 opened Node's inspector on
 * 127.0.0.1:9229 (code execution for any local process, in the one holding the credentials)
 * instead of reaching the command, as Slurm's and torchelastic's notices before preemption
 * must.
 */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
];

/** The signals that stop dsfetch's own work (the others only go to a running command). */
const STOP_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set([
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGQUIT",
]);

/** Signals a terminal sends its foreground group itself (Ctrl-C, Ctrl-\). */
const TERMINAL_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(["SIGINT", "SIGQUIT"]);

/**
 * Told when a signal could not be forwarded to the running command (kill() failed: EPERM
 * once the command changed its real uid, as `sudo` or a setuid helper does). The command
 * keeps running, and its exit is still awaited.
 */
export type ForwardFailed = (
  signal: NodeJS.Signals,
  pid: number,
  error: NodeJS.ErrnoException,
) => void;

export class SignalRouter {
  private readonly stop = new AbortController();
  private child: ChildProcess | undefined;
  private forwardFailed: ForwardFailed | undefined;
  private count = 0;
  private readonly listeners = new Set<(signal: NodeJS.Signals) => void>();
  private readonly gotFromTerminal: (pid: number) => boolean;

  /**
   * `gotFromTerminal(pid)`: whether a SIGINT or SIGQUIT that reached dsfetch reached the running
   * command `pid` directly too (a Ctrl-C or Ctrl-\ on the terminal: terminal-foreground.ts); then it is not
   * sent a second time. Not asked for SIGTERM and SIGHUP (a terminal's hang-up reaches a
   * session already detached from it: forwarded).
   */
  constructor(gotFromTerminal: (pid: number) => boolean = commandGotTerminalSignal) {
    this.gotFromTerminal = gotFromTerminal;
  }

  /** Aborted at the first signal (while no child takes them). */
  get signal(): AbortSignal {
    return this.stop.signal;
  }

  /** Installs the process handlers. */
  install(): this {
    for (const name of FORWARDED_SIGNALS) process.on(name, (signal) => this.handle(signal));
    return this;
  }

  /**
   * From now on, signals go to this child process; `onFailed` is told of a signal that could
   * not be sent to it while it runs.
   */
  forwardTo(child: ChildProcess, onFailed?: ForwardFailed): void {
    this.child = child;
    this.forwardFailed = onFailed;
  }

  /** Called on every signal (e.g. the sidecar shutting down). */
  onSignal(listener: (signal: NodeJS.Signals) => void): void {
    this.listeners.add(listener);
  }

  handle(signal: NodeJS.Signals): void {
    // Forwarded to a command that is running; one whose spawn failed gets nothing (and the
    // signal is ours: killChild never sends it to the process group).
    if (this.child !== undefined && childRunning(this.child)) {
      // A Ctrl-C (Ctrl-\) on the terminal reached the command too, from the kernel: not sent twice.
      const { pid } = this.child;
      if (TERMINAL_SIGNALS.has(signal) && pid !== undefined && this.gotFromTerminal(pid)) return;
      const failure = forward(this.child, signal);
      if (failure === undefined) return;
      // Not sent (EPERM: the command changed its real uid, review 2026-12-06), and the command
      // still runs: the signal was meant for it, not for dsfetch, which must go on waiting for
      // it (a second one used to exit dsfetch, leaving the command with no parent and its leases
      // those of a dead process).
      if (failure !== "gone" && pid !== undefined && childRunning(this.child)) {
        this.forwardFailed?.(signal, pid, failure);
        return;
      }
    }
    if (!STOP_SIGNALS.has(signal)) return;
    this.count += 1;
    for (const listener of this.listeners) listener(signal);
    // At once, without process.exit: it waits for a thread stuck on hung storage for good.
    if (this.count > 1) endNow(128 + signalNumber(signal));
    this.stop.abort(new Error(`received ${signal}`));
  }
}

/**
 * Sends `signal` to the running `child`: undefined when sent, "gone" when there was no process
 * to send it to, or the error of a kill() that failed. Node does not throw that error: kill()
 * returns false and the child process emits it ("error", synchronously), which is caught here.
 */
function forward(
  child: ChildProcess,
  signal: NodeJS.Signals,
): NodeJS.ErrnoException | "gone" | undefined {
  let failure: NodeJS.ErrnoException | undefined;
  const onError = (error: NodeJS.ErrnoException): void => {
    failure = error;
  };
  child.prependListener("error", onError);
  try {
    if (killChild(child, signal)) return undefined;
  } finally {
    child.off("error", onError);
  }
  return failure ?? "gone";
}

/**
 * The signal's number on this platform (SIGSEGV 11: a command that crashed exits 139, as in a
 * shell; every signal but four used to count as SIGTERM, 143). 15 for a name it lacks.
 */
export function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 15;
}
