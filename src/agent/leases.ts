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
 * reads the leases once more right before its swap (publish.ts, beforeReplacing), and puts
 * up a removal notice before that read (volumes/removal-notice.ts): a lease taken after its
 * read waits for its swap before the version is read again, so no lease is missed.
 */
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DsfetchError } from "../errors.ts";
import type { StagedDataset } from "../stage/stage-dataset.ts";
import { manifestOfStaged } from "../stage/staged-manifest.ts";
import { noteStuckThread } from "../util/stuck-threads.ts";
import { storageError } from "../volumes/attempt.ts";
import { locationIn } from "../volumes/layout.ts";
import type { Manifest } from "../volumes/manifest.ts";
import { manifestOfTree, pendingNaming, treeIdentity } from "../volumes/occupant.ts";
import { sameData } from "../volumes/publish.ts";
import { awaitRemovalNotices } from "../volumes/removal-notice.ts";
import { ownerOf } from "../volumes/shared-dirs.ts";
import { type StorageCall, unboundedCall } from "../volumes/storage-call.ts";
import { type Lease, takeLease } from "../volumes/usage.ts";

export interface LeaseOptions {
  /** Bounds each call on the storage (stage/storage-calls.ts). */
  readonly call?: StorageCall;
  /** The dataset is pinned by its etag and not by a versionId. */
  readonly etagPinned?: boolean;
  /** A refresh or prune is moving the tree (its removal notice is up): waited for. */
  readonly onWaiting?: (holders: readonly string[]) => void;
  /** The storage does not let this user write a lease: the dataset is used without one. */
  readonly onUnleased?: (message: string) => void;
}

/** The version at the path is no longer the one staged: what is there now, if anything. */
export interface Replaced {
  readonly replacedBy: Manifest | undefined;
}

/**
 * The job's lease on a staged shared dataset, or Replaced (nothing held) when the version at
 * its path is no longer the one `staged` reports.
 */
export async function leaseStaged(
  staged: StagedDataset,
  options: LeaseOptions = {},
): Promise<Lease | Replaced> {
  const call = options.call ?? unboundedCall;
  const location = locationIn(dirname(staged.path), basename(staged.path));
  let taking: Promise<Lease> | undefined;
  const lease = await call(`taking a lease on ${staged.path}`, () => {
    taking = takeLease(location);
    return taking;
  }).catch(async (error: unknown) => {
    // Given up on (storage that does not answer, an interrupt), it may still be taken:
    // released then, or a long-lived program would hold it for good (review).
    taking?.then((late) => late.release()).catch(() => {});
    if (error instanceof DsfetchError) throw error;
    // Shared storage full: a lease is a few bytes it refuses. The dataset is there and
    // verified: the job failed with NO_SPACE before its command started (found in session 22:
    // a full disk stopped every job, the very ones whose datasets were cached).
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT") {
      options.onUnleased?.(
        `${staged.path}: used without a lease (no space left for one in ${location.metaDir}: ${code}); a prune run meanwhile may remove it under this job: free space in the shared storage`,
      );
      return UNLEASED;
    }
    // Storage this job may read but not write (mounted read-only, another user's): the
    // published dataset is still the verified one, so the job runs; it just cannot tell
    // prune and refreshes that it is in use. It failed as INTERNAL, so no job started
    // (review, 2026-12-05).
    // Where the lease goes, or the nearest directory above it there: `leases/<dir>` of a
    // teammate's older dsfetch (0755) under a writable `.dsfetch` failed the job STORAGE.
    const refused = await unwritable(
      join(location.metaDir, "leases", basename(location.path)),
      dirname(location.metaDir),
    );
    if (refused !== undefined) {
      const owner = await ownerOf(refused);
      options.onUnleased?.(
        `${staged.path}: used without a lease (${refused} is not writable by this user${owner === "" ? "" : `; it is ${owner}`}: ${errorText(error)}); a prune or a refresh of a changed source run meanwhile by a user who can write there will not see that this job uses it`,
      );
      return UNLEASED;
    }
    throw storageError(error, join(location.metaDir, "leases"));
  });
  if (lease === UNLEASED) return lease;
  const expected = manifestOfStaged(staged);
  if (expected === undefined) return lease;
  try {
    // A refresh or prune that read the leases before this one was written has its notice
    // up (written before its read): its swap or removal is waited for, then looked at below.
    await call(`waiting for the removal notices of ${location.path}`, (signal, progressed) =>
      awaitRemovalNotices(location, {
        storageNow: lease.writtenAtMs,
        signal,
        progressed,
        onWaiting: options.onWaiting,
      }).catch((error: unknown) => {
        // Notices that cannot be read: not "none", and the storage's error, not ours.
        if (signal.aborted || error instanceof DsfetchError) throw error;
        const reason = error instanceof Error ? error.message : String(error);
        throw new DsfetchError(
          "STORAGE",
          `cannot read the removal notices of ${location.path} (${location.metaDir}/removals): ${reason}`,
          {
            hint: "check that the shared storage is mounted and readable by this user; a refresh or prune may be moving this dataset",
            cause: error,
          },
        );
      }),
    );
    const now = await call(`reading ${location.manifestPath}`, async () => {
      // The manifest of the tree there; or, just published by another worker whose manifest
      // is not in yet, its pending one (publish.ts "already-published"; review).
      const manifest = await manifestOfTree(location);
      if (manifest !== undefined) return manifest;
      const tree = await treeIdentity(location.path);
      return tree === undefined ? undefined : pendingNaming(location, tree);
    });
    if (now !== undefined && (sameData(now, expected) || sameEtag(now, expected, options))) {
      return lease;
    }
    await lease.release().catch(() => {});
    return { replacedBy: now };
  } catch (error) {
    await lease.release().catch(() => {});
    throw error;
  }
}

/** The lease of a dataset on storage this user cannot write: nothing to release. */
const UNLEASED: Lease = { writtenAtMs: 0, release: async () => {} };

/** Whether `dir` (or, when it does not exist, its parent) refuses this user's writes. */
/** The first of `dir` and its parents up to `top` that exists and this user may not write, if any. */
async function unwritable(dir: string, top: string): Promise<string | undefined> {
  for (let path = dir; ; path = dirname(path)) {
    try {
      await access(path, constants.W_OK);
      return undefined;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM" || code === "EROFS") return path;
      if (code !== "ENOENT" || path === top || dirname(path) === path) return undefined;
    }
  }
}

function errorText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code ?? (error instanceof Error ? error.message : String(error));
}

/** A dataset pinned by its etag alone is any version of that etag (a re-upload of the same bytes). */
function sameEtag(now: Manifest, expected: Manifest, options: LeaseOptions): boolean {
  return (
    options.etagPinned === true &&
    now.kind === expected.kind &&
    now.uri === expected.uri &&
    now.etag !== undefined &&
    now.etag === expected.etag
  );
}

/**
 * How long the end of a job waits for its leases to be removed. Storage that stopped
 * answering would otherwise hold the job's exit for good after its command ended (review,
 * 2026-12-05); a lease left behind is swept as stale once its process is gone (usage.ts).
 */
export const RELEASE_BOUND_MS = 30_000;

/**
 * Removes the job's leases; failures are ignored (a lease left behind is swept as stale).
 * Past `boundMs` the removals still pending are noted as a stuck thread, so that the CLI
 * ends itself (cli/finish.ts) instead of waiting for them.
 */
export async function releaseLeases(
  leases: readonly Lease[],
  boundMs: number = RELEASE_BOUND_MS,
): Promise<void> {
  const released = Promise.all(leases.map((lease) => lease.release().catch(() => {})));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), boundMs);
  });
  try {
    if ((await Promise.race([released, late])) === "late") {
      noteStuckThread(`releasing the leases of ${leases.length} datasets`, released);
    }
  } finally {
    clearTimeout(timer);
  }
}
