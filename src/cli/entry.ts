/** Process entry point: wires the real process (streams, environment, signals) to main(). */
// First, before the modules below allocate (heap-tuning.ts) or start the thread pool.
import "./heap-tuning.ts";
import "./thread-pool-size.ts";
import { DEFAULT_TUNING, resolveTuning, type TransferTuning } from "../config/tuning.ts";
import { EXIT_CODES } from "../errors.ts";
import { parseCommandLine } from "./args.ts";
import { finishProcess } from "./finish.ts";
import { jsonErrors, main } from "./main.ts";
import { armMainThreadWatchdog } from "./main-thread-watchdog.ts";
import { SignalRouter } from "./signals.ts";
import { commandGotTerminalSignal } from "./terminal-foreground.ts";

/** The exit code of a run whose output could not be written: STORAGE's (errors.ts). */
const STDOUT_FAILED = EXIT_CODES.STORAGE;

const alwaysForwardSigint = tuningOrDefault().alwaysForwardSigint;
const signals = new SignalRouter((pid) =>
  alwaysForwardSigint ? false : commandGotTerminalSignal(pid),
).install();
const argv = process.argv.slice(2);
armMainThreadWatchdog({ boundMs: tuningOrDefault().mainThreadTimeoutMs, json: wantsJson(argv) });

// Standard output that cannot be written (`> /dev/full`: ENOSPC) ended in a Node stack trace
// and exit 1, "a bug" (review, 2026-12-05): said in one line, exit 7 unless the run already
// failed. A reader that went away (EPIPE: `| head`) is no failure.
let stdoutFailed = false;
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE" || stdoutFailed) return;
  stdoutFailed = true;
  process.stderr.write(
    `dsfetch: cannot write to standard output: ${error.code ?? "error"} (${error.message}); what it would have printed is lost\n`,
  );
  if ((process.exitCode ?? 0) === 0) process.exitCode = STDOUT_FAILED;
});

const code = await main(argv, {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  stderrIsTty: process.stderr.isTTY === true,
  signal: signals.signal,
  signals,
});
// Normally sets process.exitCode; after a thread stuck on hung storage, an execve into a program that exits with the code (finish.ts).
await finishProcess(stdoutFailed && code === 0 ? STDOUT_FAILED : code, {
  stdout: process.stdout,
  stderr: process.stderr,
});

/** The settings from the environment; the defaults when one is invalid (main() reports it). */
function tuningOrDefault(): TransferTuning {
  try {
    return resolveTuning(process.env);
  } catch {
    return DEFAULT_TUNING;
  }
}

/**
 * Whether dsfetch itself was asked for --json, as main() will parse it (not `run`'s command
 * after "--", and `--no-json` too: found in review); false when the command line is bad, and
 * for `run`, whose stdout is its command's (main.ts jsonErrors; review, 2026-12-06).
 */
function wantsJson(args: readonly string[]): boolean {
  try {
    return jsonErrors(parseCommandLine(args));
  } catch {
    return false;
  }
}
