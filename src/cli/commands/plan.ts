/** `dsfetch plan`: the dry run. */
import { resolveTuning } from "../../config/tuning.ts";
import { type ErrorCode, EXIT_CODES } from "../../errors.ts";
import { plan } from "../../plan/dry-run.ts";
import { stopGraceMs } from "../../stage/progress-watchdog.ts";
import { StorageCalls } from "../../stage/storage-calls.ts";
import type { CommandContext } from "../context.ts";
import { renderPlanTable } from "../render.ts";

export async function planCommand({
  args,
  settings,
  datasets,
  env,
  out,
  err,
}: CommandContext): Promise<number> {
  const { extractStallTimeoutMs, maxExpandedBytes } = resolveTuning(env);
  // Storage that stopped answering: STALLED, not a plan that waits for good.
  const result = await plan(datasets, settings, {
    maxExpandedBytes,
    storageCalls: (dataset) =>
      new StorageCalls({
        dataset,
        stallMs: extractStallTimeoutMs,
        graceMs: stopGraceMs(extractStallTimeoutMs),
      }).call,
  });
  if (args.json) out(`${JSON.stringify({ datasets: result.datasets }, null, 2)}\n`);
  else err(renderPlanTable(result.datasets));
  const failed = result.datasets.find((entry) => entry.error !== undefined);
  return failed?.error === undefined ? 0 : (EXIT_CODES[failed.error.code as ErrorCode] ?? 1);
}
