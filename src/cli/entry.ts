/**
 * Process entry point: wires the real process to main(). The first SIGINT/SIGTERM aborts
 * staging cleanly (temporary data removed, nothing half-published); a second one exits at once.
 */
import { main } from "./main.ts";

const stop = new AbortController();
let signals = 0;
const onSignal = (signal: NodeJS.Signals) => {
  signals += 1;
  if (signals > 1) process.exit(signal === "SIGINT" ? 130 : 143);
  stop.abort(new Error(`received ${signal}`));
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  stderrIsTty: process.stderr.isTTY === true,
  signal: stop.signal,
});
