/**
 * The CLI: argv → settings and datasets → library call → rendered output and an exit code.
 * Commands are loaded on demand: `help`, `version` and `wait` never load the AWS SDK.
 * The only layer that writes to the terminal; exit codes come from errors.ts.
 */
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { loadDatasets } from "../config/load.ts";
import { Redactor } from "../config/redact.ts";
import { resolveSettings } from "../config/settings.ts";
import { DsfetchError, toDsfetchError } from "../errors.ts";
import { noteStuckThread } from "../util/stuck-threads.ts";
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
        // Asked for (`help`, `--help`, `<command> --help`, or no command): the output, on
        // stdout, as `version` is; on stderr, `dsfetch --help | less` showed nothing (README
        // audit, 2026-12-07). Usage errors still go to stderr, exit 2.
        out(HELP);
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
        return await listCommand(args, { out, err, env: io.env, signal: io.signal });
      }
      case "prune": {
        const { pruneCommand } = await import("./commands/storage.ts");
        return await pruneCommand(args, { out, err, env: io.env, signal: io.signal });
      }
      case "run": {
        const { runCommand } = await import("./commands/run.ts");
        return await runCommand(await commandContext(args, io, out, err, redactor), io.signals);
      }
      case "sidecar": {
        const { sidecarCommand, sidecarFailedEarly } = await import("./commands/sidecar.ts");
        const parsed = args;
        const context = await commandContext(parsed, io, out, err, redactor).catch(
          async (error: unknown) => {
            await sidecarFailedEarly(parsed, error);
            throw error;
          },
        );
        return await sidecarCommand(context);
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
    if (args === undefined ? jsonErrorsAsked(argv) : jsonErrors(args))
      out(`${JSON.stringify({ error: error.toJSON() })}\n`);
    else err(renderError(error));
    return error.exitCode;
  }
}

/**
 * Whether an error goes to stdout as JSON: --json asked of dsfetch, for a command whose
 * stdout is dsfetch's. Not `run`'s: its stdout is the command's (README: "for `run`, nothing
 * on stdout"), and a JSON error there went into whatever reads the command's output.
 */
export function jsonErrors(args: ParsedArgs): boolean {
  return args.json && args.command !== "run";
}

/**
 * The same for a command line that did not parse, as far as it can be told: `--json` (and no
 * `--no-json` after it) among dsfetch's own arguments, those before "--", and not `run`.
 * Review, 2026-12-06: `argv.includes("--json")` looked past "--", so `dsfetch run --datasets
 * bad.json -- python train.py --json` printed its error as JSON on stdout and nothing on
 * stderr.
 */
function jsonErrorsAsked(argv: readonly string[]): boolean {
  const dash = argv.indexOf("--");
  const own = dash === -1 ? argv : argv.slice(0, dash);
  const last = own.findLast((arg) => arg === "--json" || arg === "--no-json");
  return last === "--json" && !own.includes("run");
}

/**
 * `work`, or the error `interrupted()` makes as soon as `signal` aborts (at once when it has):
 * `--datasets -` waits for its writer to close standard input, and the first SIGINT/SIGTERM
 * did nothing during that wait (review, 2026-12-06).
 */
async function untilInterrupted<T>(
  work: Promise<T>,
  signal: AbortSignal | undefined,
  interrupted: () => Error,
): Promise<T> {
  if (signal === undefined) return await work;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        onAbort = () => reject(interrupted());
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
  }
}

async function commandContext(
  args: ParsedArgs,
  io: CliIo,
  out: (text: string) => void,
  err: (text: string) => void,
  redactor: Redactor,
): Promise<CommandContext> {
  // k8s renders a pod that runs elsewhere: this machine's DSFETCH_* settings are not read (a
  // bad DSFETCH_FALLBACK here failed the rendering: README review, 2026-12-06).
  const settings = resolveSettings(args, args.command === "k8s" ? {} : io.env);
  const reading = loadDatasets({ datasets: args.datasets, env: io.env, stdin: io.stdin });
  const datasets = await untilInterrupted(reading, io.signal, () => {
    // Not read any further: a pipe left open would keep the process from exiting.
    if (args.datasets === "-") (io.stdin as Partial<Readable>).destroy?.();
    // A file whose open or read has not returned (a FIFO no one writes, a hung mount) holds
    // a thread of the pool, and the process with it: it stayed up after the interrupt
    // (exploratory review, 2026-12-07). Noted, it ends with its code (finish.ts).
    else if (args.datasets !== undefined) {
      noteStuckThread(`reading the datasets from ${args.datasets}`, reading);
    }
    return new DsfetchError(
      "INTERRUPTED",
      `interrupted while reading the datasets from ${args.datasets === "-" ? "standard input" : (args.datasets ?? "DSFETCH_DATASETS")}`,
      { cause: io.signal?.reason },
    );
  });
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
