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
 * published is then the source's) rather than reported as the one it no longer is. A refresh
 * reads the leases once more right before its swap (publish.ts, beforeReplacing), so only a
 * lease taken within those last milliseconds can still miss it.
 */
import { basename, dirname } from "node:path";
import type { StagedDataset } from "../stage/stage-dataset.ts";
import { manifestOfStaged } from "../stage/staged-manifest.ts";
import { locationIn } from "../volumes/layout.ts";
import { manifestOfTree, pendingNaming, treeIdentity } from "../volumes/occupant.ts";
import { sameData } from "../volumes/publish.ts";
import { type StorageCall, unboundedCall } from "../volumes/storage-call.ts";
import { type Lease, takeLease } from "../volumes/usage.ts";

export interface LeaseOptions {
  /**
   * Read the version at the path again once the lease is taken. Not for a dataset pinned to
   * a version (etag, versionId): a lease does not keep a pinned version from replacing
   * another, and two jobs pinning two versions would stage each other's away in turn.
   */
  readonly confirm: boolean;
  /** Bounds each call on the storage (stage/storage-calls.ts). */
  readonly call?: StorageCall;
}

/**
 * The job's lease on a staged shared dataset, or "replaced" (nothing held) when the version
 * at its path is no longer the one `staged` reports.
 */
export async function leaseStaged(
  staged: StagedDataset,
  options: LeaseOptions,
): Promise<Lease | "replaced"> {
  const call = options.call ?? unboundedCall;
  const location = locationIn(dirname(staged.path), basename(staged.path));
  const lease = await call(`taking a lease on ${staged.path}`, () => takeLease(location));
  const expected = manifestOfStaged(staged);
  if (!options.confirm || expected === undefined) return lease;
  try {
    const now = await call(`reading ${location.manifestPath}`, async () => {
      // The manifest of the tree there; or, just published by another worker whose manifest
      // is not in yet, its pending one (publish.ts "already-published"; review).
      const manifest = await manifestOfTree(location);
      if (manifest !== undefined) return manifest;
      const tree = await treeIdentity(location.path);
      return tree === undefined ? undefined : pendingNaming(location, tree);
    });
    if (now !== undefined && sameData(now, expected)) return lease;
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
