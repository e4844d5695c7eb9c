/**
 * Whether a Ctrl-C on a terminal reached `run`'s command directly, from the kernel.
 *
 * Why `run` asks: its command is spawned in dsfetch's own process group, so a Ctrl-C on the
 * terminal reaches the command at the same time as it reaches dsfetch, when that group is
 * the terminal's foreground group. Forwarding it as well delivered it twice (`docker run
 * -it`, an interactive shell): a training script's second SIGINT interrupts its own clean-up,
 * such as the checkpoint its first SIGINT started writing. A command that moved to a group of
 * its own (`timeout`, `setsid`) got nothing from the terminal, and is sent it (review).
 *
 * Linux only (/proc/<pid>/stat: fields pgrp, tty_nr, tpgid); elsewhere, or when it cannot be
 * read, the answer is false and the signal is forwarded as before.
 */
import { readFileSync } from "node:fs";

interface StatFields {
  readonly pgrp: number;
  readonly ttyNr: number;
  readonly tpgid: number;
}

/** The fields of a /proc/<pid>/stat text; undefined when they cannot be read. */
export function statFields(text: string): StatFields | undefined {
  // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // After it: state, ppid, pgrp, session, tty_nr, tpgid.
  const pgrp = Number(rest[2]);
  const ttyNr = Number(rest[4]);
  const tpgid = Number(rest[5]);
  if (![pgrp, ttyNr, tpgid].every(Number.isInteger)) return undefined;
  return { pgrp, ttyNr, tpgid };
}

/** This process's group is the foreground group of its controlling terminal. */
export function inTerminalForeground(self: StatFields | undefined): boolean {
  return self !== undefined && self.ttyNr !== 0 && self.tpgid > 0 && self.tpgid === self.pgrp;
}

function readStat(pid: number | "self"): StatFields | undefined {
  try {
    return statFields(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The terminal's SIGINT reached the command `pid` too: dsfetch's group is the terminal's
 * foreground group, and the command is still in it.
 */
export function commandGotTerminalSignal(pid: number): boolean {
  const self = readStat("self");
  if (!inTerminalForeground(self)) return false;
  return readStat(pid)?.pgrp === self?.pgrp;
}
