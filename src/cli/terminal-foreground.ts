/**
 * Whether this process's group is the foreground group of its controlling terminal.
 *
 * Why `run` asks: its command is spawned in dsfetch's own process group, so a Ctrl-C (or a
 * hang-up) on the terminal reaches the command directly, from the kernel, at the same time
 * as it reaches dsfetch. Forwarding it as well delivered it twice (`docker run -it`, an
 * interactive shell): a training script's second SIGINT interrupts its own clean-up, such as
 * the checkpoint its first SIGINT started writing.
 *
 * Linux only (/proc/self/stat: fields pgrp, tty_nr, tpgid); elsewhere, or when it cannot be
 * read, the answer is false and signals are forwarded as before.
 */
import { readFileSync } from "node:fs";

export function inTerminalForeground(statText?: string): boolean {
  let text = statText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/stat", "utf8");
    } catch {
      return false;
    }
  }
  // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // After it: state, ppid, pgrp, session, tty_nr, tpgid.
  const pgrp = Number(rest[2]);
  const ttyNr = Number(rest[4]);
  const tpgid = Number(rest[5]);
  if (!Number.isInteger(pgrp) || !Number.isInteger(tpgid)) return false;
  return ttyNr !== 0 && tpgid > 0 && tpgid === pgrp;
}
