/** `dsfetch plan`: the dry run. */
import { type ErrorCode, EXIT_CODES } from "../../errors.ts";
import { plan } from "../../plan/dry-run.ts";
import type { CommandContext } from "../context.ts";
import { renderPlanTable } from "../render.ts";

export async function planCommand({
  args,
  settings,
  datasets,
  out,
  err,
}: CommandContext): Promise<number> {
  const result = await plan(datasets, settings);
  if (args.json) out(`${JSON.stringify({ datasets: result.datasets }, null, 2)}\n`);
  else err(renderPlanTable(result.datasets));
  const failed = result.datasets.find((entry) => entry.error !== undefined);
  return failed?.error === undefined ? 0 : (EXIT_CODES[failed.error.code as ErrorCode] ?? 1);
}
