// Runs a Node script in a process group of its own, beside a sibling process, under a small
// open-files limit: code that signals its whole process group (kill(0, …), src/util/kill-child.ts)
// kills only that group, never the test runner, and the test sees it (the sibling is gone).
import { spawn } from "node:child_process";

export interface GroupRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The script's stdout, one line per run. */
  lines: string[];
  /** The sibling in the script's process group outlived every run. */
  groupAlive: boolean;
}

/**
 * `runs` runs of `script` (a .ts file, run by this Node) in one new process group, each with
 * `ulimit -n fdLimit`, then whether a sibling in the same group is still alive.
 */
export function runInOwnProcessGroup(
  script: string,
  options: { runs?: number; fdLimit?: number; timeoutMs?: number } = {},
): Promise<GroupRun> {
  const runs = options.runs ?? 1;
  const fdLimit = options.fdLimit ?? 256;
  const program = `sleep 60 & sibling=$!
ulimit -n ${fdLimit}
for _ in $(seq ${runs}); do "$0" "$1" || { kill $sibling; exit 3; }; done
if kill -0 $sibling 2>/dev/null; then echo group-alive; fi
kill $sibling`;
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", program, process.execPath, script], {
      detached: true,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      out += text;
    });
    const timer = setTimeout(() => {
      // Never -0: that would be our own group.
      if (child.pid === undefined || child.pid <= 0) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }, options.timeoutMs ?? 30_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const lines = out.split("\n").filter((line) => line !== "");
      const groupAlive = lines.at(-1) === "group-alive";
      resolve({ code, signal, lines: groupAlive ? lines.slice(0, -1) : lines, groupAlive });
    });
  });
}
