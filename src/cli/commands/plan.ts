/** `dsfetch plan`: the dry run. */
import { resolveTuning } from "../../config/tuning.ts";
import { DsfetchError, type ErrorCode, EXIT_CODES } from "../../errors.ts";
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
  signal,
}: CommandContext): Promise<number> {
  const { extractStallTimeoutMs, maxExpandedBytes, lock, retries, stallTimeoutMs } =
    resolveTuning(env);
  // Storage that stopped answering: STALLED, not a plan that waits for good. The signal
  // reaches the store's requests and the storage's calls (plan writes nothing): the first
  // SIGINT/SIGTERM ends it with INTERRUPTED, where it was ignored until the plan was done
  // (review, 2026-12-06: `timeout 60 dsfetch plan` on a huge prefix).
  const result = await plan(datasets, settings, {
    maxExpandedBytes,
    retries,
    stallTimeoutMs,
    lockStaleMs: lock.staleMs,
    signal,
    // Its warnings on stderr, as fetch's (a zip's names read as CP437, a bucket in another
    // region, a retry): they went nowhere (2026-12-08). The rest is the table.
    onEvent: (event) => {
      if (event.type !== "warning") return;
      err(`${event.dataset === undefined ? "" : `${event.dataset}: `}warning: ${event.message}\n`);
    },
    storageCalls: (dataset) =>
      new StorageCalls({
        dataset,
        stallMs: extractStallTimeoutMs,
        graceMs: stopGraceMs(extractStallTimeoutMs),
        signal,
      }).call,
  });
  // Not a table of the datasets the interrupt failed.
  if (signal.aborted) {
    throw new DsfetchError("INTERRUPTED", "plan: interrupted before every dataset was resolved", {
      cause: signal.reason,
    });
  }
  if (args.json) out(`${JSON.stringify({ datasets: result.datasets }, null, 2)}\n`);
  else err(renderPlanTable(result.datasets));
  const failed = result.datasets.find((entry) => entry.error !== undefined);
  return failed?.error === undefined ? 0 : (EXIT_CODES[failed.error.code as ErrorCode] ?? 1);
}
