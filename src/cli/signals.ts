/**
 * What SIGINT/SIGTERM/SIGHUP/SIGQUIT do depends on the phase: while staging, the first one
 * aborts cleanly (temporary data removed, locks released, nothing half-published) and a
 * second one exits at once; while `run` runs the job's command, they are forwarded to it.
 * SIGUSR1 and SIGUSR2 are forwarded to a running command and otherwise ignored.
 */
import type { ChildProcess } from "node:child_process";
import { constants } from "node:os";
import { childRunning, killChild } from "../util/kill-child.ts";
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

export class SignalRouter {
  private readonly stop = new AbortController();
  private child: ChildProcess | undefined;
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

  /** From now on, signals go to this child process. */
  forwardTo(child: ChildProcess): void {
    this.child = child;
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
      if (killChild(this.child, signal)) return;
    }
    if (!STOP_SIGNALS.has(signal)) return;
    this.count += 1;
    for (const listener of this.listeners) listener(signal);
    if (this.count > 1) process.exit(128 + signalNumber(signal));
    this.stop.abort(new Error(`received ${signal}`));
  }
}

/**
 * The signal's number on this platform (SIGSEGV 11: a command that crashed exits 139, as in a
 * shell; every signal but four used to count as SIGTERM, 143). 15 for a name it lacks.
 */
export function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 15;
}
