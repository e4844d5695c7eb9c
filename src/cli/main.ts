/**
 * The CLI: argv → settings and datasets → library call → rendered output and an exit code.
 * Commands are loaded on demand: `help`, `version` and `wait` never load the AWS SDK.
 * The only layer that writes to the terminal; exit codes come from errors.ts.
 */
import { readFileSync } from "node:fs";
import { loadDatasets } from "../config/load.ts";
import { Redactor } from "../config/redact.ts";
import { resolveSettings } from "../config/settings.ts";
import { toDsfetchError } from "../errors.ts";
import { PACKAGE_JSON } from "../util/worker-file.ts";
import { HELP, type ParsedArgs, parseCommandLine } from "./args.ts";
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
      case "k8s": {
        const { k8sCommand } = await import("./commands/k8s.ts");
        return await k8sCommand(await commandContext(args, io, out, err, redactor), args.k8s);
      }
      case "plan": {
        const { planCommand } = await import("./commands/plan.ts");
        return await planCommand(await commandContext(args, io, out, err, redactor));
      }
      case "list": {
        const { listCommand } = await import("./commands/storage.ts");
        return await listCommand(args, { out, err, env: io.env });
      }
      case "prune": {
        const { pruneCommand } = await import("./commands/storage.ts");
        return await pruneCommand(args, { out, err, env: io.env });
      }
      case "run": {
        const { runCommand } = await import("./commands/run.ts");
        return await runCommand(await commandContext(args, io, out, err, redactor), io.signals);
      }
      case "sidecar": {
        const { sidecarCommand } = await import("./commands/sidecar.ts");
        return await sidecarCommand(await commandContext(args, io, out, err, redactor));
      }
      case "wait": {
        const { waitCommand } = await import("./commands/wait.ts");
        return await waitCommand(args, err, io.signal ?? new AbortController().signal);
      }
      case "fetch": {
        const { fetchCommand } = await import("./commands/fetch.ts");
        return await fetchCommand(await commandContext(args, io, out, err, redactor));
      }
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
  const text = readFileSync(PACKAGE_JSON, "utf8");
  return (JSON.parse(text) as { version: string }).version;
}
