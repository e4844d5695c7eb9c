/**
 * The CLI: argv → settings and datasets → library call → rendered output and an exit code.
 * The only layer that writes to the terminal; exit codes come from errors.ts.
 */
import { readFileSync } from "node:fs";
import { loadDatasets } from "../config/load.ts";
import { Redactor } from "../config/redact.ts";
import { resolveSettings } from "../config/settings.ts";
import { toDsfetchError } from "../errors.ts";
import { HELP, type ParsedArgs, parseCommandLine } from "./args.ts";
import { fetchCommand } from "./commands/fetch.ts";
import { k8sCommand } from "./commands/k8s.ts";
import { planCommand } from "./commands/plan.ts";
import { runCommand } from "./commands/run.ts";
import { sidecarCommand } from "./commands/sidecar.ts";
import { listCommand, pruneCommand } from "./commands/storage.ts";
import { waitCommand } from "./commands/wait.ts";
import type { CommandContext } from "./context.ts";
import { renderError } from "./render.ts";
import type { SignalRouter } from "./signals.ts";

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  env: Readonly<Record<string, string | undefined>>;
  /** Whether stderr is a terminal (progress bars only then). */
  stderrIsTty?: boolean;
  /** Aborted when the process is asked to stop (SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** The process's signal routing (`run` forwards signals to its command). */
  signals?: SignalRouter;
}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const redactor = new Redactor().addEnv(io.env);
  const out = (text: string) => io.stdout.write(redactor.redact(text));
  const err = (text: string) => io.stderr.write(redactor.redact(text));
  let args: ParsedArgs | undefined;
  try {
    args = parseCommandLine(argv);
    switch (args.command) {
      case "help":
        err(HELP);
        return 0;
      case "version":
        out(`${packageVersion()}\n`);
        return 0;
      case "k8s":
        return await k8sCommand(await commandContext(args, io, out, err, redactor), args.k8s);
      case "plan":
        return await planCommand(await commandContext(args, io, out, err, redactor));
      case "list":
        return await listCommand(args, { out, err, env: io.env });
      case "prune":
        return await pruneCommand(args, { out, err, env: io.env });
      case "run":
        return await runCommand(await commandContext(args, io, out, err, redactor), io.signals);
      case "sidecar":
        return await sidecarCommand(await commandContext(args, io, out, err, redactor));
      case "wait":
        return await waitCommand(args, err, io.signal ?? new AbortController().signal);
      case "fetch":
        return await fetchCommand(await commandContext(args, io, out, err, redactor));
    }
  } catch (thrown) {
    const error = toDsfetchError(thrown);
    if (args?.json === true || argv.includes("--json"))
      out(`${JSON.stringify({ error: error.toJSON() })}\n`);
    else err(renderError(error));
    return error.exitCode;
  }
}

async function commandContext(
  args: ParsedArgs,
  io: CliIo,
  out: (text: string) => void,
  err: (text: string) => void,
  redactor: Redactor,
): Promise<CommandContext> {
  const settings = resolveSettings(args, io.env);
  const datasets = await loadDatasets({ datasets: args.datasets, env: io.env, stdin: io.stdin });
  redactor.addDatasets(datasets);
  const tty = io.stderrIsTty === true && (io.env.TERM ?? "") !== "dumb";
  return {
    args,
    settings,
    datasets,
    out,
    err,
    stderrIsTty: tty,
    signal: io.signal ?? new AbortController().signal,
    env: io.env,
  };
}

function packageVersion(): string {
  const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
  return (JSON.parse(text) as { version: string }).version;
}
