/**
 * What SIGINT/SIGTERM/SIGHUP do depends on the phase: while staging, the first one aborts
 * cleanly (temporary data removed, locks released, nothing half-published) and a second
 * one exits at once; while `run` runs the job's command, they are forwarded to it.
 */
import type { ChildProcess } from "node:child_process";
import { childRunning, killChild } from "../util/kill-child.ts";
import { commandGotTerminalSignal } from "./terminal-foreground.ts";

export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

export class SignalRouter {
  private readonly stop = new AbortController();
  private child: ChildProcess | undefined;
  private count = 0;
  private readonly listeners = new Set<(signal: NodeJS.Signals) => void>();
  private readonly gotFromTerminal: (pid: number) => boolean;

  /**
   * `gotFromTerminal(pid)`: whether a SIGINT that reached dsfetch reached the running command
   * `pid` directly too (a Ctrl-C on the terminal: terminal-foreground.ts); then it is not
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
      // A Ctrl-C on the terminal reached the command too, from the kernel: not sent twice.
      const { pid } = this.child;
      if (signal === "SIGINT" && pid !== undefined && this.gotFromTerminal(pid)) return;
      if (killChild(this.child, signal)) return;
    }
    this.count += 1;
    for (const listener of this.listeners) listener(signal);
    if (this.count > 1) process.exit(128 + signalNumber(signal));
    this.stop.abort(new Error(`received ${signal}`));
  }
}

export function signalNumber(signal: NodeJS.Signals): number {
  return signal === "SIGINT" ? 2 : signal === "SIGHUP" ? 1 : signal === "SIGKILL" ? 9 : 15;
}
