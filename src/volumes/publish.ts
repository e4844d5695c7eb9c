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
import { fsyncDirectory, syncTree } from "./sync-tree.ts";

export type PublishOutcome = "published" | "replaced" | "already-published";

/** Whether a manifest found at the final path describes the same data as ours. */
export function sameData(a: Manifest, b: Manifest): boolean {
  if (a.kind !== b.kind || a.uri !== b.uri) return false;
  if (a.kind === "prefix") return a.listingDigest === b.listingDigest;
  return a.etag === b.etag && (a.versionId ?? undefined) === (b.versionId ?? undefined);
}

export async function publish(
  attempt: Attempt,
  location: DatasetLocation,
  manifest: Manifest,
): Promise<PublishOutcome> {
  try {
    await writeFile(attempt.manifestPath, `${JSON.stringify(manifest, null, 2)}\n`, {
      mode: 0o644,
    });
    // Read-only below the root now; the root itself after the rename (moving a directory
    // to another parent needs write permission on it, to update its ".."). Every file in an
    // attempt comes from our own writers, created read-only (permissions.ts).
    // A tree (folder, archive) is walked with synchronous calls: watched (a one-file
    // dataset's walk is one directory, and a watcher thread is not free: main-thread-beat.ts).
    if (manifest.files.length > 1) syncStorageCallsAhead();
    makeReadOnly(attempt.dataDir, { keepRoot: true, filesCreatedReadOnly: true });
    await syncTree(attempt.dir);
  } catch (error) {
    throw storageError(error, attempt.dir);
  }
  let outcome: PublishOutcome = "published";
  try {
    await rename(attempt.dataDir, location.path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw storageError(error, location.path);
    const existing = await readManifest(location.manifestPath);
    if (existing !== undefined && sameData(existing, manifest)) {
      // Another worker published the same data first: theirs stands, ours goes.
      await discardAttempt(attempt);
      return "already-published";
    }
    // What is there is older data (or has no manifest): swap ours in. The old tree is moved
    // aside first, so the final path only ever holds a complete tree.
    const aside = join(dirname(attempt.dir), `replaced.${randomBytes(6).toString("hex")}`);
    try {
      await makeWritable(location.path);
      await rename(location.path, aside);
      await rename(attempt.dataDir, location.path);
    } catch (swapError) {
      throw storageError(swapError, location.path);
    }
    await removeTree(aside);
    outcome = "replaced";
  }
  try {
    await chmod(location.path, 0o555);
    await fsyncDirectory(dirname(location.path));
    await mkdir(dirname(location.manifestPath), { recursive: true });
    await rename(attempt.manifestPath, location.manifestPath);
    await fsyncDirectory(dirname(location.manifestPath));
  } catch (error) {
    throw storageError(error, location.manifestPath);
  } finally {
    await discardAttempt(attempt);
  }
  return outcome;
}
