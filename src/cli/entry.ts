/** Process entry point: wires the real process (streams, environment, signals) to main(). */
// First, before the modules below allocate (heap-tuning.ts) or start the thread pool.
import "./heap-tuning.ts";
import "./thread-pool-size.ts";
import { finishProcess } from "./finish.ts";
import { main } from "./main.ts";
import { SignalRouter } from "./signals.ts";

const signals = new SignalRouter().install();

const code = await main(process.argv.slice(2), {
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
