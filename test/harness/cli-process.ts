// dsfetch as a long-running process a test talks to while it runs (signals, readiness):
// started, its output gathered, its end awaited.
import { type ChildProcess, spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { baseEnv, CLI_ENTRY } from "./cli.ts";

/**
 * `dsfetch run` of the datasets on standard input, staged under `storage` (team "ml", mounts
 * in `mountRoot`, default `storage`/mnt), then `command`.
 */
export function jobArgs(
  storage: string,
  command: readonly string[],
  mountRoot = join(storage, "mnt"),
): string[] {
  return [
    "run",
    "--datasets",
    "-",
    "--storage-root",
    storage,
    "--team",
    "ml",
    "--mount-root",
    mountRoot,
    "--",
    ...command,
  ];
}

/**
 * `dsfetch sidecar` of the datasets on standard input, staged under `storage` as jobArgs
 * does, listening on `listen`, with `readyFile`.
 */
export function sidecarArgs(storage: string, listen: string, readyFile: string): string[] {
  const [, ...shared] = jobArgs(storage, []);
  return ["sidecar", ...shared.slice(0, -1), "--listen", listen, "--ready-file", readyFile];
}

export interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/**
 * Starts dsfetch with `args`. `ownGroup`: in a process group of its own, so that stopGroup()
 * ends it and whatever it started (a test that failed halfway leaves no command running).
 * `stdin`: written and closed; null leaves standard input open (a `--datasets -` that waits).
 */
export function start(
  args: readonly string[],
  env: Record<string, string | undefined>,
  stdin: string | null = "",
  ownGroup = false,
): Started {
  const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
    env: baseEnv(env),
    stdio: ["pipe", "pipe", "pipe"],
    detached: ownGroup,
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  if (stdin !== null) child.stdin?.end(stdin);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>(
    (resolve) => child.on("close", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

export async function until(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(50);
  }
}

export const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** SIGKILL to the process group of a process started with `ownGroup`, if it is still there. */
export function stopGroup(started: Started): void {
  const { pid } = started.child;
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}
