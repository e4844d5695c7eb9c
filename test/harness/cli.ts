// Runs dsfetch as a real process, the way users do, and captures what it printed.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { inject } from "vitest";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/**
 * The CLI the tests run: bundled from src/ at the start of this run (harness/cli-bundle.ts),
 * so never a stale build, and loaded as one file, as installed.
 */
export const CLI_ENTRY = cliEntry();

function cliEntry(): string {
  const entry = inject("cliEntry");
  if (!entry) {
    throw new Error(
      "no CLI bundle was provided: run the tests through vitest with test/global-setup.ts (`npx vitest run`)",
    );
  }
  return entry;
}

/**
 * Where the CLI processes of the tests keep Node's compile cache: beside this run's bundle,
 * removed with it (Node keys its entries by path too, and each run's bundle has its own).
 */
const TEST_COMPILE_CACHE = join(dirname(CLI_ENTRY), "compile-cache");
/** The CLI as installed (bin → dist/), for packaging tests. */
export const CLI_BIN = fileURLToPath(new URL("../../bin/dsfetch.js", import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  stdin?: string;
  cwd?: string;
  /** Kill the process after this many ms (the test then fails on the signal). */
  timeoutMs?: number;
  entry?: string;
}

/** A clean environment: nothing from the developer's AWS setup leaks into a test. */
export function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/tmp",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: "/nonexistent/dsfetch-test-aws-config",
    AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/dsfetch-test-aws-credentials",
    NO_COLOR: "1",
    // Node's compile cache (keyed by each file's contents, so never stale): V8's compiling
    // of the bundle done once per run of the suite, not once per process (hundreds of them).
    // From src/, before the bundle, a CLI started in 0.36 s, 0.14 s with it.
    NODE_COMPILE_CACHE: TEST_COMPILE_CACHE,
  };
  for (const [key, value] of Object.entries(extra)) {
    if (value !== undefined) env[key] = value;
  }
  return env;
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return runProgram(process.execPath, [options.entry ?? CLI_ENTRY, ...args], options);
}

/**
 * `file` with `args` (dsfetch through `setpriv`, as another user), its output gathered.
 * Spawned, never spawnSync'ed: that held the test file's event loop, and its concurrent tests
 * ran one process at a time.
 */
export function runProgram(
  file: string,
  args: readonly string[],
  options: Omit<CliOptions, "entry"> = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: baseEnv(options.env),
      cwd: options.cwd ?? REPO_ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    // A child that exits before it reads its stdin (one that fails first, or never reads it)
    // closes the pipe: EPIPE is no failure of the test (its exit code and output are); it
    // escaped as an uncaught error and failed the whole run (2026-12-07).
    child.stdin.on("error", () => {});
    child.stdin.end(options.stdin ?? "");
  });
}
