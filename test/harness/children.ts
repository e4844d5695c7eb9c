// The processes this test process started, for tests that assert none is left running.
import { execFileSync, spawnSync } from "node:child_process";

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

/**
 * The pids of any process (ours or orphaned) whose command line names `path`, or "" (pgrep
 * leaves itself out): a probe killed and forgotten must not outlive its bound.
 */
export function processesNaming(path: string): string {
  try {
    return execFileSync("pgrep", ["-f", path]).toString().trim();
  } catch {
    return ""; // pgrep exits 1 when nothing matches
  }
}

/** The pid of a process of this host that has ended (a holder or a sidecar that is gone). */
export function deadPid(): number {
  const child = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(child.stdout.trim());
}
