// The processes this test process started, for tests that assert none is left running.
import { execFileSync } from "node:child_process";

/** The commands of this process's children, one per line ("" when it has none). */
export function childCommands(): string {
  try {
    return execFileSync("ps", ["-o", "comm=", "--ppid", String(process.pid)], {
      encoding: "utf8",
    });
  } catch {
    return ""; // ps exits 1 when nothing matches
  }
}
