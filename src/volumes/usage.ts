/**
 * Who uses a published dataset, and when it was last used, so `prune` removes the least
 * recently used first and never one in use (SPEC §2).
 *
 *   <meta>/used/<dir>                       touched every time the dataset is staged or reused
 *   <meta>/leases/<dir>/<host>.<pid>.<id>   held by a running job (run, sidecar) and touched
 *                                           every LEASE_REFRESH_MS; fresh = in use
 */
import { rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { newHolderPath, readHolderFiles, writeHolderFile } from "./holder-files.ts";
import type { DatasetLocation } from "./layout.ts";
import { replaceWithEmptyFile, rewriteFile, touchFile, writeNewFile } from "./no-follow.ts";
import { makeSharedDir, widenBookkeeping } from "./shared-dirs.ts";

export const LEASE_REFRESH_MS = 30_000;
/** A lease not refreshed for this long belongs to a job that is gone. */
export const LEASE_STALE_MS = 5 * 60_000;

function usedPath(location: DatasetLocation): string {
  return join(location.metaDir, "used", basename(location.path));
}

function leaseDir(location: DatasetLocation): string {
  return join(location.metaDir, "leases", basename(location.path));
}

/** Records that the dataset was just used. Best effort: never fails staging. */
export async function markUsed(location: DatasetLocation): Promise<void> {
  const path = usedPath(location);
  const now = new Date();
  // Every run that uses a dataset heals this user's bookkeeping directories of an older
  // dsfetch or a umask, so that teammates can stage beside them (shared-dirs.ts).
  await widenBookkeeping(dirname(location.metaDir), undefined, basename(location.path));
  try {
    // Its owner's, as before (no inode needed on a full disk); never through a link.
    await touchFile(path, now);
  } catch {
    // Another user's (only its owner may set its times), missing, or a link put there.
    await makeSharedDir(join(location.metaDir, "used")).catch(() => {});
    await replaceWithEmptyFile(path).catch(() => {});
  }
}

export async function lastUsed(location: DatasetLocation): Promise<Date | undefined> {
  try {
    return (await stat(usedPath(location))).mtime;
  } catch {
    return undefined;
  }
}

/**
 * Makes the dataset's lease and removal-notice directories while there is room: on a disk
 * later full to the last block (ext4: a new directory takes a block) jobs can still write
 * their leases and `prune` its notice there, as empty files (holder-files.ts); found in
 * review: prune could not free such a disk. Best effort.
 */
export async function makeBookkeepingDirs(location: DatasetLocation): Promise<void> {
  const dir = basename(location.path);
  for (const kind of ["leases", "removals"]) {
    await makeSharedDir(join(location.metaDir, kind, dir)).catch(() => {});
  }
}

export interface Lease {
  /** When the lease was written, on the storage's clock (its file's mtime, in ms). */
  readonly writtenAtMs: number;
  release(): Promise<void>;
}

/**
 * Marks the dataset in use until released; refreshed in the background every `refreshMs`
 * (tests shorten it).
 */
export async function takeLease(
  location: DatasetLocation,
  refreshMs = LEASE_REFRESH_MS,
): Promise<Lease> {
  const dir = leaseDir(location);
  const path = await newHolderPath(dir, 4);
  await writeHolderFile(path);
  let writtenAtMs: number;
  try {
    writtenAtMs = (await stat(path)).mtimeMs;
  } catch (error) {
    await rm(path, { force: true }).catch(() => {});
    throw error;
  }
  let released = false;
  let refreshing: Promise<void> = Promise.resolve();
  // The dataset's last use moves with the job, not only at its staging: a job that ran for
  // ten days left it ten days old, and `prune --older-than 7d` removed it the moment the job
  // ended (review, 2026-12-05).
  const refresh = async () => {
    const now = new Date();
    await markUsed(location);
    try {
      // A write, not utimes(now): a write's mtime is the storage's clock (the NFS server's),
      // utimes sets this machine's, and readers judge leases against their own. A job whose
      // clock was 10 minutes behind had its lease taken as stale after its first refresh, and
      // prune removed the dataset under it (review, 2026-12-05). A disk with no byte free
      // (the lease was made empty then: holder-files.ts) still takes the time this way.
      await rewriteFile(path, now.toISOString()).catch(async (error: unknown) => {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ENOSPC" && code !== "EDQUOT") throw error;
        await touchFile(path, now);
      });
    } catch (error) {
      // Swept as stale (its refreshes were late: storage that hung for minutes) while the job
      // still runs: put back, or a refresh or prune would go ahead under the job. So is one a
      // teammate replaced with a link (never written through: no-follow.ts).
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== "ENOENT" && code !== "ELOOP" && code !== "EINVAL") || released) return;
      if (code !== "ENOENT") await rm(path, { force: true });
      await makeSharedDir(dir);
      await writeNewFile(path, now.toISOString());
    }
  };
  const timer = setInterval(() => {
    refreshing = refreshing.then(refresh).catch(() => {});
  }, refreshMs);
  timer.unref();
  return {
    writtenAtMs,
    release: async () => {
      released = true;
      clearInterval(timer);
      await refreshing;
      await markUsed(location);
      await rm(path, { force: true });
    },
  };
}

/**
 * The holders of fresh leases on the dataset ("host pid N"); empty when it is not in use.
 * Leases that are over (a dead process's of this host and PID namespace, or not refreshed
 * for LEASE_STALE_MS) are removed on the way (best effort): every job killed left one, and
 * each was looked at again by every staging (review). A live job whose lease was removed
 * puts it back at its next refresh.
 *
 * A lease's time is the storage's (its refreshes are writes: the NFS server's clock), so its
 * age is judged against `storageNow`, a time on that clock (RemovalNotice.storageNow: the
 * mtime of a file the caller has just written there). Judged against this machine's clock, a
 * remover 5 minutes ahead of the server took every live lease for stale, removed it, and
 * pruned or swapped the dataset under the job (review, 2026-12-06). Without `storageNow`
 * (list, plan, a first look before a removal notice is up) this machine's clock answers for
 * the report, and nothing is removed on its word: only a dead process's lease of this host,
 * which no clock decides.
 */
export async function activeLeases(
  location: DatasetLocation,
  storageNow?: number,
): Promise<string[]> {
  // Leases that cannot be read throw: the caller takes the dataset to be in use
  // (unreadableLeases).
  const active: string[] = [];
  for (const file of await readHolderFiles(leaseDir(location))) {
    let fresh: boolean;
    try {
      fresh = (storageNow ?? Date.now()) - (await stat(file.path)).mtimeMs < LEASE_STALE_MS;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    // On this host a dead process's lease is over at once; elsewhere only by its age.
    if (fresh && !file.goneHere) active.push(file.holder);
    else if (file.goneHere || storageNow !== undefined) {
      await rm(file.path, { force: true }).catch(() => {});
    }
  }
  return active;
}

/**
 * activeLeases for a last look before a tree is moved (a refresh's swap, prune): the lease
 * directory is made first, since on NFS a cached absence of it would hide the first lease
 * of the dataset, just taken by a job (review, 2026-12-05). `storageNow`: as activeLeases.
 */
export async function activeLeasesBeforeRemoval(
  location: DatasetLocation,
  storageNow?: number,
): Promise<string[]> {
  // Best effort: storage that cannot be written (read-only, another user's) is judged by the
  // caller's own checks (a fallback to an ephemeral volume), not by this (review).
  await makeSharedDir(leaseDir(location)).catch(() => {});
  return activeLeases(location, storageNow);
}

/**
 * The holder named for leases that could not be read (an error other than "none there"):
 * the dataset is then taken to be in use, and kept.
 */
export function unreadableLeases(error: unknown): string {
  const reason = error instanceof Error ? error.message : String(error);
  return `unknown holders (its leases could not be read: ${reason})`;
}
