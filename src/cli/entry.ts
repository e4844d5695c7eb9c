/** Process entry point: wires the real process (streams, environment, signals) to main(). */
// First, before the modules below allocate (heap-tuning.ts) or start the thread pool.
import "./heap-tuning.ts";
import "./thread-pool-size.ts";
import { DEFAULT_TUNING, resolveTuning, type TransferTuning } from "../config/tuning.ts";
import { parseCommandLine } from "./args.ts";
import { finishProcess } from "./finish.ts";
import { main } from "./main.ts";
import { armMainThreadWatchdog } from "./main-thread-watchdog.ts";
import { SignalRouter } from "./signals.ts";
import { commandGotTerminalSignal } from "./terminal-foreground.ts";

const alwaysForwardSigint = tuningOrDefault().alwaysForwardSigint;
const signals = new SignalRouter((pid) =>
  alwaysForwardSigint ? false : commandGotTerminalSignal(pid),
).install();
const argv = process.argv.slice(2);
armMainThreadWatchdog({ boundMs: tuningOrDefault().mainThreadTimeoutMs, json: wantsJson(argv) });

const code = await main(argv, {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  stderrIsTty: process.stderr.isTTY === true,
  signal: signals.signal,
  signals,
});
// Normally sets process.exitCode; after a thread stuck on hung storage, SIGKILL (finish.ts).
await finishProcess(code, { stdout: process.stdout, stderr: process.stderr });

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
 * after "--", and `--no-json` too: found in review); false when the command line is bad.
 */
function wantsJson(args: readonly string[]): boolean {
  try {
    return parseCommandLine(args).json;
  } catch {
    return false;
  }
}
