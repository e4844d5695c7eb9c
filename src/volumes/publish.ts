/**
 * Publishing is what makes a dataset visible, and it is atomic: the verified tree is made
 * durable, then moved to its final path with one rename(2) on the same filesystem. A
 * directory at a final path is therefore always complete. The manifest follows it.
 * Correctness never depends on the lock: when two publishers race, the first rename wins
 * and the second removes only its own attempt.
 */

import { randomBytes } from "node:crypto";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DsfetchError } from "../errors.ts";
import { syncStorageCallsAhead } from "../util/main-thread-beat.ts";
import { type Attempt, storageError } from "./attempt.ts";
import type { DatasetLocation } from "./layout.ts";
import { type Manifest, readManifest } from "./manifest.ts";
import { makeReadOnly, makeWritable, removeTreeReporting } from "./permissions.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { fsyncDirectory, SYNC_LIMIT_MS, syncTree } from "./sync-tree.ts";

export type PublishOutcome = "published" | "replaced" | "already-published";

/** Whether a manifest found at the final path describes the same data as ours. */
export function sameData(a: Manifest, b: Manifest): boolean {
  if (a.kind !== b.kind || a.uri !== b.uri) return false;
  if (a.kind === "prefix") return a.listingDigest === b.listingDigest;
  return a.etag === b.etag && (a.versionId ?? undefined) === (b.versionId ?? undefined);
}

/**
 * `call` bounds each call on the storage (stage/storage-calls.ts); a call it gives up on
 * fails the publish with its error, and no later step runs.
 */
export async function publish(
  attempt: Attempt,
  location: DatasetLocation,
  manifest: Manifest,
  call: StorageCall = unboundedCall,
): Promise<PublishOutcome> {
  try {
    await call(`writing ${attempt.manifestPath}`, () =>
      writeFile(attempt.manifestPath, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 }),
    );
    // Read-only below the root now; the root itself after the rename (moving a directory
    // to another parent needs write permission on it, to update its ".."). Every file in an
    // attempt comes from our own writers, created read-only (permissions.ts).
    // A tree (folder, archive) is walked with synchronous calls: watched (a one-file
    // dataset's walk is one directory, and a watcher thread is not free: main-thread-beat.ts).
    if (manifest.files.length > 1) syncStorageCallsAhead();
    makeReadOnly(attempt.dataDir, { keepRoot: true, filesCreatedReadOnly: true });
    // Its own bound too: a whole filesystem's dirty data (other writers' included).
    await call(`syncing ${attempt.dir}`, (signal) => syncTree(attempt.dir, signal), {
      atLeastMs: SYNC_LIMIT_MS + 5_000,
    });
  } catch (error) {
    throw storageError(error, attempt.dir);
  }
  let outcome: PublishOutcome = "published";
  try {
    await call(`renaming ${attempt.dataDir} to ${location.path}`, () =>
      rename(attempt.dataDir, location.path),
    );
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw storageError(error, location.path);
    const existing = await call(`reading ${location.manifestPath}`, () =>
      readManifest(location.manifestPath),
    );
    if (existing !== undefined && sameData(existing, manifest)) {
      // Another worker published the same data first: theirs stands, ours goes.
      await removeAttempt(attempt, call);
      return "already-published";
    }
    await swapIn(attempt, location, call);
    outcome = "replaced";
  }
  try {
    await call(`making ${location.path} read-only`, () => chmod(location.path, 0o555));
    await call(`syncing ${dirname(location.path)}`, () => fsyncDirectory(dirname(location.path)));
    await call(`writing ${location.manifestPath}`, async () => {
      await mkdir(dirname(location.manifestPath), { recursive: true });
      await rename(attempt.manifestPath, location.manifestPath);
    });
    await call(`syncing ${dirname(location.manifestPath)}`, () =>
      fsyncDirectory(dirname(location.manifestPath)),
    );
  } catch (error) {
    // The attempt is the caller's to remove on a failure (bounded there, and not while a
    // call on it is still pending: stage-dataset.ts).
    throw storageError(error, location.manifestPath);
  }
  await removeAttempt(attempt, call);
  return outcome;
}

/**
 * Replaces the older data (or data without a manifest) at the final path with the attempt's
 * tree. The old manifest goes first, then the old tree is moved aside, then ours moved in:
 * wherever this stops (a crash, a call given up on), the final path holds either no tree or
 * a complete one, and never a tree under another version's manifest (found in review: moved
 * in, then stopped, the new bytes stood under the old manifest and a later run reused them
 * as the old version). A tree without a manifest is replaced by the next run. On an error
 * from the storage (not a stall: hung storage would not take the calls back either) the
 * old tree and manifest are put back. The old tree is removed once ours is in place.
 */
async function swapIn(attempt: Attempt, location: DatasetLocation, call: StorageCall) {
  const aside = join(dirname(attempt.dir), `replaced.${randomBytes(6).toString("hex")}`);
  const asideManifest = `${aside}.json`;
  let manifestAside = false;
  let treeAside = false;
  try {
    manifestAside = await call(`moving ${location.manifestPath} aside`, () =>
      rename(location.manifestPath, asideManifest).then(
        () => true,
        (error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT") return false;
          throw error;
        },
      ),
    );
    if (manifestAside) {
      await call(`syncing ${dirname(location.manifestPath)}`, () =>
        fsyncDirectory(dirname(location.manifestPath)),
      );
    }
    await call(`making ${location.path} writable`, () => makeWritable(location.path));
    await call(`renaming ${location.path} to ${aside}`, () => rename(location.path, aside));
    treeAside = true;
    await call(`renaming ${attempt.dataDir} to ${location.path}`, () =>
      rename(attempt.dataDir, location.path),
    );
  } catch (swapError) {
    if (!(swapError instanceof DsfetchError)) {
      await putBack(
        location,
        call,
        treeAside ? aside : undefined,
        manifestAside ? asideManifest : undefined,
      );
    }
    throw storageError(swapError, location.path);
  }
  // Best effort, as removing the attempt: the tree may be large, and its removal reports
  // each entry, so a long one that keeps going is not a stall.
  await call(`removing ${aside}`, (_signal, progressed) =>
    removeTreeReporting(aside, progressed),
  ).catch(() => {});
  await call(`removing ${asideManifest}`, () => rm(asideManifest, { force: true })).catch(() => {});
}

/** Puts the old tree and manifest back where the swap failed before ours was in. Best effort. */
async function putBack(
  location: DatasetLocation,
  call: StorageCall,
  aside: string | undefined,
  asideManifest: string | undefined,
): Promise<void> {
  try {
    if (aside !== undefined) {
      await call(`renaming ${aside} to ${location.path}`, () => rename(aside, location.path));
    }
    if (asideManifest !== undefined) {
      await call(`renaming ${asideManifest} to ${location.manifestPath}`, () =>
        rename(asideManifest, location.manifestPath),
      );
    }
  } catch {
    // Left as it is: no tree, or a tree without a manifest, is replaced by the next run.
  }
}

/**
 * Removes what is left of an attempt once the dataset is published (its empty directory,
 * or all of its tree when another worker published the same data first). Best effort:
 * published is published. Each entry removed is progress; on storage that stopped answering
 * the call is left to the kernel (and noted: the CLI then ends with SIGKILL), and a later
 * run removes what is left.
 */
async function removeAttempt(attempt: Attempt, call: StorageCall): Promise<void> {
  await call(`removing ${attempt.dir}`, (_signal, progressed) =>
    removeTreeReporting(attempt.dir, progressed),
  ).catch(() => {});
}
