/** Marks staged datasets in use for as long as a job runs, so `prune` never removes them. */

import { basename, dirname } from "node:path";
import type { Settings } from "../config/types.ts";
import type { StageOutcome } from "../stage/stage.ts";
import { locationIn } from "../volumes/layout.ts";
import { type Lease, takeLease } from "../volumes/usage.ts";

export async function holdLeases(
  outcomes: readonly StageOutcome[],
  _settings: Settings,
): Promise<Lease[]> {
  const leases: Lease[] = [];
  for (const outcome of outcomes) {
    if (!outcome.ok || outcome.volume !== "shared") continue;
    leases.push(await takeLease(locationIn(dirname(outcome.path), basename(outcome.path))));
  }
  return leases;
}

export async function releaseLeases(leases: readonly Lease[]): Promise<void> {
  await Promise.all(leases.map((lease) => lease.release().catch(() => {})));
}
