/**
 * `dsfetch prune`: removes published datasets by age or to fit a total size, least recently
 * used first, never one in use (a fresh lease) or being staged (its lock is held). A dataset
 * disappears from its final path with one rename before anything is deleted, so no reader
 * ever sees half a dataset.
 */
import { randomBytes } from "node:crypto";
import { lstat, readdir, readFile, rename, rm, rmdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { DsfetchError } from "../errors.ts";
import { isStorageFull, storageError } from "./attempt.ts";
import { type CatalogEntry, listDatasets } from "./catalog.ts";
import { cleanAbandonedAttempts } from "./cleanup.ts";
import { locationIn, META_DIR, sharedDataRoot } from "./layout.ts";
import {
  acquireLock,
  type HeldLock,
  lockHeld,
  removeStaleLocks,
  StaleLockNotOurs,
} from "./lock.ts";
import { chmodDir } from "./no-follow.ts";
import { manifestOfTree } from "./occupant.ts";
import { makeWritable, removeTreeReporting } from "./permissions.ts";
import { postRemovalNoticeWithin, type RemovalNotice } from "./removal-notice.ts";
import { makeSharedDir } from "./shared-dirs.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { activeLeasesBeforeRemoval, lastUsed, unreadableLeases } from "./usage.ts";

export interface PruneOptions {
  /** Remove datasets not used for longer than this. */
  readonly olderThanMs?: number | undefined;
  /** Remove least recently used datasets until the total is at most this. */
  readonly maxBytes?: number | undefined;
  /** Report what would be removed, remove nothing. */
  readonly dryRun?: boolean;
  readonly now?: number;
  readonly lockStaleMs: number;
  /** Bounds the calls on the storage (stage/storage-calls.ts). */
  readonly call?: StorageCall | undefined;
  /**
   * Stops prune (INTERRUPTED) between its steps: during the listing, before each dataset,
   * and a dataset's deletion once it is out of its path; never between a dataset's lock and
   * its move aside. `call` itself is not interrupted: a removal's last steps (the notice
   * taken down, the lock released) must run (review, 2026-12-06: prune ignored SIGTERM).
   */
  readonly signal?: AbortSignal | undefined;
}

export interface PruneDecision {
  readonly name: string;
  readonly path: string;
  readonly bytes: number;
  readonly lastUsed: string;
  /** Why it was kept although selected, when it was. */
  readonly keptBecause?: string;
}

export interface PruneResult {
  readonly removed: readonly PruneDecision[];
  readonly kept: readonly PruneDecision[];
  readonly freedBytes: number;
  readonly remainingBytes: number;
}

export async function prune(
  storageRoot: string,
  team: string,
  options: PruneOptions,
): Promise<PruneResult> {
  if (options.olderThanMs === undefined && options.maxBytes === undefined) {
    throw new DsfetchError("USAGE", "prune needs --older-than and/or --max-size", {
      hint: "e.g. dsfetch prune --older-than 14d, or --max-size 500Gi",
    });
  }
  const now = options.now ?? Date.now();
  const call = options.call ?? unboundedCall;
  const { signal } = options;
  const removed: PruneDecision[] = [];
  // Said where prune stops: what was removed (whole) before, and that nothing else was.
  const stopIfInterrupted = (): void => {
    if (signal?.aborted !== true) return;
    const names = removed.map((entry) => entry.name).join(", ");
    throw new DsfetchError(
      "INTERRUPTED",
      removed.length === 0
        ? "prune: interrupted; nothing was removed"
        : `prune: interrupted after ${options.dryRun === true ? "choosing" : "removing"} ${removed.length} dataset${removed.length === 1 ? "" : "s"} (${names}); ${options.dryRun === true ? "nothing was removed (--dry-run)" : "each was removed whole, the others were left as they were"}`,
      {
        hint: "run prune again to go on (files of a removal cut short are deleted by a later prune)",
        cause: signal.reason,
      },
    );
  };
  // The listing's calls only read: stopped between them (a team of many datasets on slow
  // storage is a long listing).
  const listingCall: StorageCall = (what, work, callOptions) => {
    stopIfInterrupted();
    return call(what, work, callOptions);
  };
  const entries = (await listDatasets(storageRoot, team, listingCall)).sort((a, b) =>
    a.lastUsed.localeCompare(b.lastUsed),
  );
  let total = entries.reduce((sum, entry) => sum + entry.bytes, 0);
  const kept: PruneDecision[] = [];
  const dataRoot = sharedDataRoot(storageRoot, team);
  /** Failure records and abandoned attempts that are over, as after every prune. */
  const removeFinishedBookkeeping = async (): Promise<void> => {
    await call(`removing old failure records in ${dataRoot}`, () =>
      removeOldFailureRecords(dataRoot, now),
    ).catch(() => {});
    // Attempts of workers that died, another machine's among them: a worker removes those
    // of its own dataset only when it downloads it again, so one whose holder died while
    // another worker took over (the usual crash of a multi-node job) stayed for good, a
    // partial dataset's worth of bytes (review, 2026-12-05). Same bound as a download's.
    await call(`removing abandoned attempts in ${dataRoot}`, (stop, progressed) =>
      cleanAbandonedAttempts(
        locationIn(dataRoot, "prune"),
        Math.max(10 * 60_000, 4 * options.lockStaleMs),
        progressed,
        signal === undefined ? stop : AbortSignal.any([stop, signal]),
        true,
      ),
    ).catch(() => {});
  };
  /** Storage found with no room for a removal's lock and notice: freed once. */
  let freedBookkeeping = false;
  const freeBookkeeping = async (): Promise<void> => {
    const locks = join(dataRoot, META_DIR, "locks");
    // Each call on the storage bounded, the confirmation window waited out between them (in
    // one call, it was taken for hung storage: review, 2026-12-07).
    await removeStaleLocks(locks, options.lockStaleMs, {
      call,
      ...(signal === undefined ? {} : { signal }),
    }).catch(() => 0);
    stopIfInterrupted();
    await removeFinishedBookkeeping();
    stopIfInterrupted();
  };
  for (const entry of entries) {
    // Between datasets: the one before is removed whole (or kept), this one not touched.
    stopIfInterrupted();
    const old =
      options.olderThanMs !== undefined && now - Date.parse(entry.lastUsed) > options.olderThanMs;
    const over = options.maxBytes !== undefined && total > options.maxBytes;
    if (!old && !over) continue;
    const decision = {
      name: entry.name,
      path: entry.path,
      bytes: entry.bytes,
      lastUsed: entry.lastUsed,
    };
    if (entry.inUse.length > 0) {
      kept.push({ ...decision, keptBecause: `in use by ${entry.inUse.join(", ")}` });
      continue;
    }
    if (options.dryRun === true) {
      const location = locationIn(sharedDataRoot(storageRoot, team), basename(entry.path));
      if (
        await call(`looking at the lock ${location.lockPath}`, () =>
          lockHeld(location.lockPath, options.lockStaleMs),
        )
      ) {
        kept.push({ ...decision, keptBecause: "it is being staged right now" });
        continue;
      }
      removed.push(decision);
      total -= entry.bytes;
      continue;
    }
    const remove = (holderFile = true) =>
      removeDataset(storageRoot, team, entry, options.lockStaleMs, call, signal, holderFile);
    const why = await remove()
      .catch(async (thrown: unknown) => {
        // No room for prune's own lock and notice: bookkeeping that is over (stale locks,
        // old failure records, abandoned attempts) is cleared once, and the removal tried
        // again (exploratory tester 2, 2026-12-07: it could not free such storage).
        if (freedBookkeeping || !isStorageFull(storageError(thrown, entry.path))) throw thrown;
        freedBookkeeping = true;
        await freeBookkeeping();
        // Without a holder file: with one dead lock freed (two inodes), the holder file took
        // the inode the removal notice needed (review, 2026-12-07).
        return remove(false);
      })
      .catch((thrown: unknown) => {
        // The storage's own errors as such (STORAGE, exit 7), never INTERNAL ("a bug in
        // dsfetch"): a raw EACCES escaped here (review, 2026-12-06).
        const error = storageError(thrown, entry.path);
        // Its lock and removal notice are small files (empty ones when no byte is free:
        // holder-files.ts); if not even those can be made, no inode is left. The storage
        // error's own hint ("dsfetch prune") would send the user round in a circle.
        if (!isStorageFull(error)) throw error;
        throw new DsfetchError(
          "NO_SPACE",
          `cannot remove ${entry.path} (${error.message}): prune makes a lock (a directory) and a removal notice (an empty file when no byte is free) first, and the shared storage refuses even those: no inode left (df -i), or no block for a directory (df -h)`,
          {
            hint: "free a little space or a few inodes there by hand (a file there that is not a dataset's), then run prune again",
            cause: error,
          },
        );
      });
    if (why !== undefined) {
      kept.push({ ...decision, keptBecause: why });
      continue;
    }
    removed.push(decision);
    total -= entry.bytes;
  }
  if (options.dryRun !== true) await removeFinishedBookkeeping();
  // After the last dataset or during these clean-ups (stopped by it): still an interrupt.
  stopIfInterrupted();
  const freedBytes = removed.reduce((sum, entry) => sum + entry.bytes, 0);
  return { removed, kept, freedBytes, remainingBytes: total };
}

/** Removes one dataset under its lock; returns why it was kept instead, if it was. */
async function removeDataset(
  storageRoot: string,
  team: string,
  entry: CatalogEntry,
  lockStaleMs: number,
  call: StorageCall,
  interrupt: AbortSignal | undefined,
  holderFile = true,
): Promise<string | undefined> {
  const location = locationIn(sharedDataRoot(storageRoot, team), basename(entry.path));
  let outcome: Awaited<ReturnType<typeof acquireLock>>;
  try {
    outcome = await acquireLock(location.lockPath, entry.name, {
      timing: { staleMs: lockStaleMs, pollMs: 100, waitMs: 0 },
      call,
      holderFile,
    });
  } catch (error) {
    if (error instanceof DsfetchError && error.code === "LOCK_TIMEOUT")
      return "it is being staged right now";
    // Kept, and said why: the other datasets are still pruned.
    if (error instanceof StaleLockNotOurs) return `${error.message}; ${error.hint}`;
    if (!isStorageFull(error)) throw error;
    // A disk full to the last block refuses even the lock's directory (ext4: a directory
    // takes a block; found in review: prune could not free such a disk). Nobody can take
    // the lock then either: looked at instead, and the removal goes ahead under its notice.
    const held = await call(`looking at the lock ${location.lockPath}`, () =>
      lockHeld(location.lockPath, lockStaleMs),
    );
    if (held) return "it is being staged right now";
    outcome = { kind: "acquired", lock: NOT_LOCKED };
  }
  if (outcome.kind !== "acquired") return "it is being staged right now";
  let notice: RemovalNotice | undefined;
  let gone = false;
  try {
    // Up before the leases are read: a job that leases it after that read waits for the
    // removal, then finds it gone and stages it again (removal-notice.ts).
    try {
      notice = await postRemovalNoticeWithin(call, location);
    } catch (error) {
      // Another user's dataset, whose notice directory this user may not write: kept, and
      // the others are still pruned (review, 2026-12-06: prune stopped there, STORAGE).
      const refused = refusalIn(error);
      if (refused === undefined) throw error;
      return notOursToRemove("writing its removal notice", refused, location.path);
    }
    const leases = await call(`reading the leases of ${location.path}`, () =>
      activeLeasesBeforeRemoval(location, notice?.storageNow()).catch((error: unknown) => [
        unreadableLeases(error),
      ]),
    );
    if (leases.length > 0) return `in use by ${leases.join(", ")}`;
    // Used since the listing (a job that reused it marks the use before it takes its lease:
    // found in review, 2026-12-05): not old any more. A job that reuses it after this look
    // finds it gone once leased, and stages it again (agent/leases.ts).
    const used = await call(`reading when ${location.path} was used`, () => lastUsed(location));
    if (used !== undefined && used.getTime() > Date.parse(entry.lastUsed)) {
      return `used since the listing (${used.toISOString()})`;
    }
    const aside = join(location.tmpDir, `pruned.${randomBytes(6).toString("hex")}`);
    // Still the tree its manifest names (the listing may be old): else not a dataset of ours.
    const named = await call(`reading ${location.manifestPath}`, () => manifestOfTree(location));
    if (named === undefined) return "its manifest no longer names the directory there";
    /** true: out of its path, manifest gone; false: the notice lapsed; else why it stays. */
    const moved = await call(
      `moving ${location.path} aside`,
      async (): Promise<boolean | string> => {
        const listed = await readFile(location.manifestPath, "utf8").catch(() => undefined);
        const readOnlyAgain = () => chmodDir(location.path, 0o555).catch(() => {});
        try {
          await makeSharedDir(location.tmpDir);
          await makeWritable(location.path);
          // Jobs may have taken the notice for over (its refreshes late): one may hold it now.
          if (!notice?.honoured()) {
            await readOnlyAgain();
            return false;
          }
          await rename(location.path, aside);
        } catch (error) {
          // Nothing moved: left whole, and read-only again (made writable above when ours).
          // Another user's tree refuses the rename (moving a directory to another parent
          // writes its ".."; a sticky data directory: EPERM): kept, said why, and the others
          // pruned (review, 2026-12-06: a raw EACCES escaped, INTERNAL).
          await readOnlyAgain();
          const refused = refusalIn(error);
          if (refused === undefined) throw error;
          return notOursToRemove("moving it aside", refused, location.path);
        }
        // Only the manifest of the tree moved aside: a publisher that lost its lock may have put
        // its own in meanwhile (review, 2026-12-05).
        const now = await readFile(location.manifestPath, "utf8").catch(() => undefined);
        if (now === listed) {
          try {
            await rm(location.manifestPath, { force: true });
          } catch (error) {
            // A manifest this user may not remove (another user's, in a sticky or read-only
            // manifests directory) would name a tree that is gone, and refuse the next publish
            // of the dataset: the tree goes back, whole, under it (review, 2026-12-06).
            if (!(await putBack(aside, location.path))) {
              throw new DsfetchError(
                "STORAGE",
                `${entry.name}: ${location.path} was moved to ${aside} to be removed, but its manifest ${location.manifestPath} could not be removed (${(error as Error).message}), and the tree could not be put back: another tree took its place meanwhile`,
                {
                  dataset: entry.name,
                  hint: `remove ${location.manifestPath} as its owner or as root if no tree is at ${location.path}; ${aside} goes with a later prune`,
                  cause: error,
                },
              );
            }
            await readOnlyAgain();
            const refused = refusalIn(error);
            if (refused === undefined) throw error;
            return notOursToRemove("removing its manifest", refused, location.manifestPath);
          }
        }
        // Its last use only guides the order of prunes: a mark this user may not remove stays.
        await rm(join(location.metaDir, "used", basename(location.path)), { force: true }).catch(
          () => {},
        );
        return true;
      },
    );
    await withdrawNotice(notice, call);
    if (typeof moved === "string") return moved;
    if (!moved) {
      return "the storage answered too slowly to remove it safely (jobs may have stopped waiting for its removal); run prune again";
    }
    // Entry by entry: a large tree on slow storage keeps going, hung storage is a stall.
    // Out of its path already: an interrupt stops the deletion, what is left goes with a
    // later run's clean-up (review, 2026-12-06).
    await call(`removing ${aside}`, (stop, progressed) =>
      removeTreeReporting(
        aside,
        progressed,
        interrupt === undefined ? stop : AbortSignal.any([stop, interrupt]),
      ),
    ).catch((error: unknown) => {
      // What is left goes with a later run's clean-up (cleanup.ts); a stall is still one.
      if (error instanceof DsfetchError && error.code === "STALLED") throw error;
    });
    gone = true;
    return undefined;
  } finally {
    await withdrawNotice(notice, call);
    if (gone) {
      // Its bookkeeping too (review, 2026-12-05: empty lease and notice directories were left
      // for every dataset ever pruned). rmdir leaves a directory a job just wrote in; a job
      // that made one just before this removes it writes again (holder-files.ts).
      await call(`removing what was kept beside ${location.path}`, async () => {
        await rmdir(join(location.metaDir, "leases", basename(location.path))).catch(() => {});
        await rmdir(join(location.metaDir, "removals", basename(location.path))).catch(() => {});
        await rm(location.failurePath, { force: true }).catch(() => {});
      }).catch(() => {});
    }
    const { lock } = outcome;
    // The lock goes stale if this cannot be done; an error already thrown stays the answer.
    await call(`releasing the lock ${location.lockPath}`, () => lock.release()).catch(() => {});
  }
}

/**
 * The refusal in `error` when the storage does not let this user change a dataset's files
 * (EACCES, EPERM: another user's dataset, or bookkeeping directories this user may not write;
 * EROFS), thrown as such or as the cause of a STORAGE error; undefined for any other error.
 */
function refusalIn(error: unknown): NodeJS.ErrnoException | undefined {
  let at: unknown = error;
  for (let depth = 0; depth < 4 && at instanceof Error; depth++) {
    if (at instanceof DsfetchError) {
      if (at.code !== "STORAGE") return undefined;
      at = at.cause;
      continue;
    }
    const { code } = at as NodeJS.ErrnoException;
    return code === "EACCES" || code === "EPERM" || code === "EROFS"
      ? (at as NodeJS.ErrnoException)
      : undefined;
  }
  return undefined;
}

/**
 * Why a dataset this user may not remove is kept: the step refused, the path and the errno,
 * and what to do. `path`: where the step was refused, when the error does not say.
 */
function notOursToRemove(step: string, refused: NodeJS.ErrnoException, path: string): string {
  const code = refused.code ?? "EACCES";
  const why =
    code === "EROFS"
      ? "read-only filesystem"
      : code === "EPERM"
        ? "operation not permitted"
        : "permission denied";
  // A rename's error names both ends (Node sets `dest`).
  const { dest } = refused as { dest?: string };
  const where = `${refused.path ?? path}${dest === undefined ? "" : ` -> ${dest}`}`;
  const what = `this user may not remove it: ${step} was refused (${code}: ${why}, ${where})`;
  return code === "EROFS"
    ? `${what}; the shared storage is mounted read-only here: run prune where it is writable`
    : `${what}; it was left whole: run prune as the user who owns these, or as root`;
}

/**
 * Moves a tree moved aside back to its path, where nothing took its place meanwhile (a
 * publisher that lost its lock); whether it is back.
 */
async function putBack(aside: string, path: string): Promise<boolean> {
  const taken = await lstat(path).then(
    () => true,
    (error: NodeJS.ErrnoException) => error.code !== "ENOENT",
  );
  if (taken) return false;
  return rename(aside, path).then(
    () => true,
    () => false,
  );
}

/** Stands for the lock where the full disk refused it (nothing to release). */
const NOT_LOCKED: HeldLock = {
  holder: { host: "", pid: 0, since: "" },
  intact: () => false,
  stillHeld: async () => false,
  release: async () => {},
};

/** Best effort: a notice left up (storage that stopped answering) is over within a minute. */
async function withdrawNotice(notice: RemovalNotice | undefined, call: StorageCall): Promise<void> {
  if (notice === undefined) return;
  // Not tried (another call has had no answer): its refreshes stop, so it goes stale.
  await call(`taking down the removal notice`, () => notice.withdraw()).catch(() =>
    notice.abandon(),
  );
}

/** A failure record matters to the workers waiting on its holder, for minutes at most. */
const FAILURE_RECORD_KEPT_MS = 60 * 60_000;

/**
 * Failure records (failure-record.ts) older than an hour: one of a dataset never published
 * on shared storage (it fell back to ephemeral volumes, or kept failing) stayed for good,
 * out of reach of prune, which removes a record only with its dataset (review).
 */
async function removeOldFailureRecords(dataRoot: string, now: number): Promise<void> {
  const dir = join(dataRoot, META_DIR, "failures");
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.endsWith(".json")) continue;
    const path = join(dir, name);
    const age = await stat(path).then(
      (s) => now - s.mtimeMs,
      () => 0,
    );
    if (age > FAILURE_RECORD_KEPT_MS) await rm(path, { force: true }).catch(() => {});
  }
}
