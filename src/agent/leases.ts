/**
 * Marks staged datasets in use for as long as a job runs, so that `prune` never removes
 * them and a refresh of a changed source never replaces them under the job (stage-dataset.ts,
 * keptInUse).
 *
 * Taken by stage() as soon as each dataset is staged (`lease: true`), not once all are: a job
 * staging a second, large dataset left its first one unleased for that long, and a refresh
 * by another job or a prefetch could replace it then (review, 2026-12-05). What remains is the
 * moment between the decision and the lease; so the lease is taken first, then the version
 * at the path is read again: replaced meanwhile, the dataset is staged again (the version now
 * published is then the source's) rather than reported as the one it no longer is.
 */
import { basename, dirname } from "node:path";
import type { StagedDataset } from "../stage/stage-dataset.ts";
import { manifestOfStaged } from "../stage/staged-manifest.ts";
import { inspectStaged } from "../volumes/inspect.ts";
import { locationIn } from "../volumes/layout.ts";
import { sameData } from "../volumes/publish.ts";
import { type Lease, takeLease } from "../volumes/usage.ts";

/**
 * The job's lease on a staged shared dataset, or "replaced" (nothing held) when the version
 * at its path is no longer the one `staged` reports.
 */
export async function leaseStaged(staged: StagedDataset): Promise<Lease | "replaced"> {
  const location = locationIn(dirname(staged.path), basename(staged.path));
  const lease = await takeLease(location);
  const expected = manifestOfStaged(staged);
  if (expected === undefined) return lease;
  try {
    const now = await inspectStaged(location);
    if (now.manifest !== undefined && sameData(now.manifest, expected)) return lease;
  } catch (error) {
    await lease.release().catch(() => {});
    throw error;
  }
  await lease.release().catch(() => {});
  return "replaced";
}

export async function releaseLeases(leases: readonly Lease[]): Promise<void> {
  await Promise.all(leases.map((lease) => lease.release().catch(() => {})));
}
