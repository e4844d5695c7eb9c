// Runs the CLI in a mount namespace of its own (`unshare -m`, root only), after a shell
// script has mounted what the test needs there: nothing stays mounted whatever happens to
// the test.
import { spawn } from "node:child_process";
import { baseEnv, CLI_ENTRY, REPO_ROOT } from "./cli.ts";

export interface NamespacedResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Fails loudly when the tests do not run as root (they do, here and in CI). */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`this test needs root (${what})`);
}

/**
 * `dsfetch args…` after `mounts` (a shell script; its positional parameters are
 * `mountArgs`; exit 99 when it fails) ran in the same new mount namespace.
 */
export function runCliWithMounts(
  mounts: string,
  mountArgs: readonly string[],
  args: readonly string[],
  env: Record<string, string | undefined>,
): Promise<NamespacedResult> {
  const script = `{ ${mounts}; } || exit 99; shift ${mountArgs.length}; exec "$@"`;
  return new Promise((resolve, reject) => {
    const child = spawn(
      "unshare",
      ["-m", "sh", "-c", script, "sh", ...mountArgs, process.execPath, CLI_ENTRY, ...args],
      { env: baseEnv(env), cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
