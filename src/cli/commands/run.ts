/**
 * `dsfetch run [flags] -- <command…>`: the container entrypoint. Stages every dataset and
 * links it at <mount-root>/<name>, then runs the command with DSFETCH_PATH_<NAME> set for
 * each dataset; signals go to the command and its exit code becomes ours. A staging
 * failure exits with the documented code before the command runs.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { releaseLeases } from "../../agent/leases.ts";
import { resolveTuning } from "../../config/tuning.ts";
import { DsfetchError, EXIT_CODES } from "../../errors.ts";
import { datasetEnvName, envNameClash } from "../../k8s/env-names.ts";
import { exitCodeOfStage, failuresOf, type StageResult, stage } from "../../stage/stage.ts";
import {
  commandProblem,
  existsAsFile,
  HINT_NOT_EXECUTABLE,
  HINT_NOT_FOUND,
} from "../command-check.ts";
import type { CommandContext } from "../context.ts";
import { stopMainThreadWatchdog } from "../main-thread-watchdog.ts";
import { ProgressView } from "../progress-view.ts";
import { renderError } from "../render.ts";
import { type SignalRouter, signalNumber } from "../signals.ts";
import { threadPoolSizeSetHere } from "../thread-pool-size.ts";

export async function runCommand(
  context: CommandContext,
  signals: SignalRouter | undefined,
): Promise<number> {
  const { args, settings, datasets, err, env, signal } = context;
  // Before any download: the command would silently get one of the two paths (review).
  const clash = envNameClash(datasets.map((spec) => spec.name));
  if (clash !== undefined) {
    throw new DsfetchError(
      "CONFIG_INVALID",
      `datasets "${clash.names[0]}" and "${clash.names[1]}" would both be given to the command as ${clash.variable}`,
      {
        hint: 'rename one of them ("name" field): DSFETCH_PATH_<NAME> upper-cases the name and turns other characters into "_"',
      },
    );
  }
  // Before any download too: a typo in the command failed only after the staging.
  const problem = commandProblem(
    args.exec[0] ?? "",
    env,
    [settings.mountRoot, settings.storageRoot, settings.ephemeralRoot].filter(
      (root): root is string => root !== undefined,
    ),
  );
  if (problem !== undefined) throw problem;
  const view = new ProgressView(err, context.stderrIsTty);
  const result = await stage(datasets, settings, {
    onEvent: view.handle,
    signal,
    tuning: resolveTuning(env),
    mount: args.mountFlag ?? true,
    lease: true,
    verifyContent: args.verify,
  });
  try {
    view.close();
    return await runStaged(context, signals, result);
  } finally {
    await releaseLeases(result.leases);
  }
}

async function runStaged(
  context: CommandContext,
  signals: SignalRouter | undefined,
  result: StageResult,
): Promise<number> {
  const { args, env, err, signal } = context;
  const failed = failuresOf(result);
  if (failed.length > 0) {
    for (const outcome of failed) err(renderError(outcome.error));
    err(
      `dsfetch: not running ${args.exec.join(" ")}: ${failed.length} of ${result.datasets.length} dataset${result.datasets.length === 1 ? "" : "s"} could not be staged\n`,
    );
    return exitCodeOfStage(result);
  }
  // Interrupted as the last dataset was staged: the command is not started after a SIGTERM
  // (its signal was dsfetch's, and is spent).
  const interrupted = (): boolean => {
    if (signal?.aborted !== true) return false;
    err(`dsfetch: not running ${args.exec.join(" ")}: interrupted\n`);
    return true;
  };
  if (interrupted()) return EXIT_CODES.INTERRUPTED;
  await warnIfCommandCanWriteShared(result, err);
  // Asked again after that wait (access() on shared storage, as root): a signal that came
  // during it was spent on nothing, and the command was started anyway, never to get it
  // (review, 2026-12-06). Nothing is awaited from here to the spawn, after which signals
  // go to the command.
  if (interrupted()) return EXIT_CODES.INTERRUPTED;
  const childEnv: Record<string, string | undefined> = { ...env };
  // Ours, for dsfetch's own file writes: the training command keeps libuv's default.
  if (threadPoolSizeSetHere) delete childEnv.UV_THREADPOOL_SIZE;
  // dsfetch's input, which may hold per-dataset keys: training tools record their
  // environment (experiment trackers, crash reports), and the command has its paths
  // (review, 2026-12-05).
  delete childEnv.DSFETCH_DATASETS;
  for (const outcome of result.datasets) {
    if (!outcome.ok) continue;
    childEnv[datasetEnvName(outcome.name)] = outcome.mount ?? outcome.path;
  }
  // The training command runs for hours: a stuck dsfetch must not take it down then (the
  // watchdog guards the staging only).
  stopMainThreadWatchdog();
  return await runChild(args.exec, childEnv, signals, err);
}

/**
 * Published trees are read-only by their modes (files 0444, directories 0555), which root
 * ignores: a command running as root in dsfetch's container could delete or overwrite files
 * of a shared dataset, and every later job would reuse the damaged tree as verified (review,
 * 2026-12-05). Said once, when it is so; `dsfetch k8s` mounts the storage read-only in the
 * training container instead.
 */
async function warnIfCommandCanWriteShared(
  result: StageResult,
  err: (text: string) => void,
): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const writable: string[] = [];
  for (const outcome of result.datasets) {
    if (!outcome.ok || outcome.volume !== "shared") continue;
    const ok = await access(outcome.path, constants.W_OK).then(
      () => true,
      () => false,
    );
    if (ok) writable.push(outcome.name);
  }
  if (writable.length === 0) return;
  err(
    `dsfetch: warning: the command runs as root, which file modes do not stop: it can change the shared datasets ${writable.join(", ")}, and later jobs would reuse them as they are; run it as another user, or mount the shared storage read-only where it runs (see README "In a job")\n`,
  );
}

function runChild(
  command: readonly string[],
  env: Record<string, string | undefined>,
  signals: SignalRouter | undefined,
  err: (text: string) => void,
): Promise<number> {
  const [file, ...argv] = command;
  return new Promise((resolve, reject) => {
    const child = spawn(file as string, argv, { stdio: "inherit", env });
    let spawned = false;
    child.once("spawn", () => {
      spawned = true;
    });
    signals?.forwardTo(child, (signal, pid, error) =>
      err(forwardFailedWarning(signal, pid, error)),
    );
    child.on("error", (error: NodeJS.ErrnoException) => {
      // After the spawn, an "error" is a signal that could not be sent (kill() → EPERM once the
      // command changed its real uid: sudo, a setuid helper), not a failure to run it: the
      // command runs on, its exit code is still ours, and its leases stay held until it exits
      // (it was rejected as "cannot run", exit 126, leases released under a running command:
      // review, 2026-12-06). The signal router says which signal; anything else is said here.
      if (spawned || hasPid(child)) {
        if (error.syscall !== "kill" || signals === undefined) {
          err(
            `dsfetch: warning: ${error.message} (the command, pid ${child.pid}, keeps running; dsfetch waits for it to exit)\n`,
          );
        }
        return;
      }
      const missing = error.code === "ENOENT";
      // A file that is there: what is missing is its #! interpreter or its ELF loader (it
      // said "no such command" of a script whose interpreter was not installed: tester).
      const there = missing && file?.includes("/") === true && existsAsFile(file as string);
      reject(
        new DsfetchError(
          missing ? "COMMAND_NOT_FOUND" : "COMMAND_NOT_EXECUTABLE",
          `cannot run ${JSON.stringify(file)}: ${there ? "it exists, but its interpreter (its #! line) or its loader was not found" : missing ? "no such command" : error.message}`,
          {
            hint: missing ? HINT_NOT_FOUND : HINT_NOT_EXECUTABLE,
            cause: error,
          },
        ),
      );
    });
    // The command's exit code becomes ours; killed by a signal → 128 + its number, as shells do.
    child.on("exit", (code, signal) => resolve(code ?? 128 + signalNumber(signal ?? "SIGTERM")));
  });
}

/** Node sets a child's pid only once its spawn worked (util/kill-child.ts). */
function hasPid(child: ChildProcess): boolean {
  const { pid } = child;
  return pid !== undefined && Number.isInteger(pid) && pid > 0;
}

function forwardFailedWarning(
  signal: NodeJS.Signals,
  pid: number,
  error: NodeJS.ErrnoException,
): string {
  const why =
    error.code === "EPERM"
      ? " (not permitted: the command runs as another user, e.g. through sudo or a setuid program)"
      : "";
  return `dsfetch: warning: could not forward ${signal} to the command (pid ${pid}): ${error.code ?? error.message}${why}; the command keeps running, and dsfetch waits for it to exit\n`;
}
