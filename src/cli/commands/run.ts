/**
 * `dsfetch run [flags] -- <command…>`: the container entrypoint. Stages every dataset and
 * links it at <mount-root>/<name>, then runs the command with DSFETCH_PATH_<NAME> set for
 * each dataset; signals go to the command and its exit code becomes ours. A staging
 * failure exits with the documented code before the command runs.
 */
import { spawn } from "node:child_process";
import { releaseLeases } from "../../agent/leases.ts";
import { resolveTuning } from "../../config/tuning.ts";
import { DsfetchError, EXIT_CODES } from "../../errors.ts";
import { datasetEnvName } from "../../k8s/env-names.ts";
import { exitCodeOfStage, failuresOf, type StageResult, stage } from "../../stage/stage.ts";
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
  const view = new ProgressView(err, context.stderrIsTty);
  const result = await stage(datasets, settings, {
    onEvent: view.handle,
    signal,
    tuning: resolveTuning(env),
    mount: args.mountFlag ?? true,
    lease: true,
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
      `dsfetch: not running ${args.exec.join(" ")}: ${failed.length} of ${result.datasets.length} datasets could not be staged\n`,
    );
    return exitCodeOfStage(result);
  }
  if (signal?.aborted === true) {
    // Interrupted as the last dataset was staged: the command is not started after a SIGTERM
    // (its signal was dsfetch's, and is spent).
    err(`dsfetch: not running ${args.exec.join(" ")}: interrupted\n`);
    return EXIT_CODES.INTERRUPTED;
  }
  const childEnv: Record<string, string | undefined> = { ...env };
  // Ours, for dsfetch's own file writes: the training command keeps libuv's default.
  if (threadPoolSizeSetHere) delete childEnv.UV_THREADPOOL_SIZE;
  for (const outcome of result.datasets) {
    if (!outcome.ok) continue;
    childEnv[datasetEnvName(outcome.name)] =
      (args.mountFlag ?? true) ? outcome.mount : outcome.path;
  }
  // The training command runs for hours: a stuck dsfetch must not take it down then (the
  // watchdog guards the staging only).
  stopMainThreadWatchdog();
  return await runChild(args.exec, childEnv, signals);
}

function runChild(
  command: readonly string[],
  env: Record<string, string | undefined>,
  signals: SignalRouter | undefined,
): Promise<number> {
  const [file, ...argv] = command;
  return new Promise((resolve, reject) => {
    const child = spawn(file as string, argv, { stdio: "inherit", env });
    signals?.forwardTo(child);
    child.on("error", (error: NodeJS.ErrnoException) => {
      const missing = error.code === "ENOENT";
      reject(
        new DsfetchError(
          missing ? "COMMAND_NOT_FOUND" : "COMMAND_NOT_EXECUTABLE",
          `cannot run ${JSON.stringify(file)}: ${missing ? "no such command" : error.message}`,
          {
            hint: missing
              ? "check the command after --, and that it is on PATH inside the container"
              : "check that the command after -- is an executable file (chmod +x; a script needs its #! line)",
            cause: error,
          },
        ),
      );
    });
    // The command's exit code becomes ours; killed by a signal → 128 + its number, as shells do.
    child.on("exit", (code, signal) => resolve(code ?? 128 + signalNumber(signal ?? "SIGTERM")));
  });
}
