/**
 * Publishing is what makes a dataset visible, and it is atomic: the verified tree is made
 * durable, then moved to its final path with one rename(2) on the same filesystem. A
 * directory at a final path is therefore always complete. The manifest follows it.
 * Correctness never depends on the lock: when two publishers race, the first rename wins
 * and the second removes only its own attempt.
 */

import { randomBytes } from "node:crypto";
import { chmod, mkdir, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { syncStorageCallsAhead } from "../util/main-thread-beat.ts";
import { type Attempt, discardAttempt, storageError } from "./attempt.ts";
import type { DatasetLocation } from "./layout.ts";
import { type Manifest, readManifest } from "./manifest.ts";
import { makeReadOnly, makeWritable, removeTree } from "./permissions.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { fsyncDirectory, syncTree } from "./sync-tree.ts";

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
    await call(`syncing ${attempt.dir}`, () => syncTree(attempt.dir));
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
    // What is there is older data (or has no manifest): swap ours in. The old tree is moved
    // aside first, so the final path only ever holds a complete tree.
    const aside = join(dirname(attempt.dir), `replaced.${randomBytes(6).toString("hex")}`);
    try {
      await call(`making ${location.path} writable`, () => makeWritable(location.path));
      await call(`renaming ${location.path} to ${aside}`, () => rename(location.path, aside));
      await call(`renaming ${attempt.dataDir} to ${location.path}`, () =>
        rename(attempt.dataDir, location.path),
      );
    } catch (swapError) {
      throw storageError(swapError, location.path);
    }
    // The replaced tree may be large: its removal makes progress of its own and is not
    // bounded as one call (a later run removes what is left: cleanup.ts).
    await removeTree(aside);
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
 * Removes what is left of an attempt once the dataset is published: its empty directory.
 * Best effort: published is published. On storage that stopped answering the call is left
 * to the kernel (and noted: the CLI then ends with SIGKILL), and a later run removes it.
 */
async function removeAttempt(attempt: Attempt, call: StorageCall): Promise<void> {
  await call(`removing ${attempt.dir}`, () => discardAttempt(attempt)).catch(() => {});
}
