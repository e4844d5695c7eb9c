/**
 * What SIGINT/SIGTERM/SIGHUP do depends on the phase: while staging, the first one aborts
 * cleanly (temporary data removed, locks released, nothing half-published) and a second
 * one exits at once; while `run` runs the job's command, they are forwarded to it.
 */
import type { ChildProcess } from "node:child_process";
import { childRunning, killChild } from "../util/kill-child.ts";
import { inTerminalForeground } from "./terminal-foreground.ts";

export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Signals a terminal sends to its whole foreground process group (Ctrl-C, hang-up): the
 * command, in dsfetch's group, has already had them from the kernel.
 */
const TERMINAL_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(["SIGINT", "SIGHUP"]);

export class SignalRouter {
  private readonly stop = new AbortController();
  private child: ChildProcess | undefined;
  private count = 0;
  private readonly listeners = new Set<(signal: NodeJS.Signals) => void>();
  private readonly fromTerminal: () => boolean;

  /** `inForeground` is asked when a terminal signal arrives while a command runs (tests). */
  constructor(inForeground: () => boolean = inTerminalForeground) {
    this.fromTerminal = inForeground;
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
      if (TERMINAL_SIGNALS.has(signal) && this.fromTerminal()) return;
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
