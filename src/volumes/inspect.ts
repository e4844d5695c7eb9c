/** What is on disk for a dataset: is something published at its final path, with what manifest. */
import { lstat } from "node:fs/promises";
import { syncStorageCallsAhead } from "../util/main-thread-beat.ts";
import { storageError } from "./attempt.ts";
import type { DatasetLocation } from "./layout.ts";
import type { Manifest } from "./manifest.ts";
import { manifestOfTree, type PendingManifest, sameTree, treeIdentity } from "./occupant.ts";
import {
  compareSeal,
  isTreeSeal,
  type SealComparison,
  type SealVerdict,
  unreadableInWords,
} from "./tree-seal.ts";

export interface StagedState {
  readonly exists: boolean;
  readonly manifest: Manifest | undefined;
  /**
   * The tree no longer has the seal its manifest recorded: changed since it was published
   * (tree-seal.ts). Never reused as it is.
   */
  readonly altered?: boolean;
  /** With `altered`: what changed, in words (tree-seal.ts SealComparison.change). */
  readonly change?: string;
  /**
   * The tree has the shape it was published with, but files of other modification times
   * (tree-seal.ts: rewritten in place with as many bytes, or storage that sets times on its
   * own). Reused, and said.
   */
  readonly timesChanged?: boolean;
  /** Files that were read-only when it was published have a write bit now (tree-seal.ts). */
  readonly madeWritable?: boolean;
}

/**
 * `progressed`: called as a long walk of the tree goes (the caller's clock: storage-call.ts).
 */
export async function inspectStaged(
  location: DatasetLocation,
  progressed?: () => void,
): Promise<StagedState> {
  for (let look = 1; ; look++) {
    const exists = await lstat(location.path).then(
      (stats) => stats.isDirectory(),
      () => false,
    );
    // A manifest over another tree than the one it names is not that tree's (occupant.ts).
    const manifest = exists ? await manifestOfTree(location) : undefined;
    if (manifest === undefined) return { exists, manifest };
    let verdict: SealVerdict;
    let madeWritable: boolean;
    let change: string | undefined;
    try {
      ({ verdict, madeWritable, change } = await sealVerdict(location, manifest, progressed));
    } catch (error) {
      // The tree moved away during the walk (a refresh's swap, a prune; ESTALE on NFS, where
      // another host removed it): looked at again.
      const { code } = error as NodeJS.ErrnoException;
      if (!MOVED.has(code ?? "") || look === 3) throw storageError(error, location.path);
      continue;
    }
    const writable = madeWritable ? { madeWritable } : {};
    if (verdict === "holds") return { exists, manifest, ...writable };
    // The walk goes by path: a tree swapped in during it (another worker's refresh) mixed the
    // two. Only a tree still there when the walk ended is said to be changed.
    const { tree } = manifest as Partial<PendingManifest>;
    const there = await treeIdentity(location.path).catch(() => undefined);
    if (tree === undefined || (there !== undefined && sameTree(there, tree)) || look === 3) {
      return verdict === "times"
        ? { exists, manifest, timesChanged: true, ...writable }
        : { exists, manifest, altered: true, ...(change === undefined ? {} : { change }) };
    }
  }
}

const MOVED = new Set(["ENOENT", "ENOTDIR", "ESTALE"]);

/** Trees of more files than this are walked with synchronous calls (tree-seal.ts). */
const SYNC_WALK_FROM_FILES = 256;

/**
 * Verdicts by tree and seal, for this process: a staging looks at the path several times
 * (before and under the lock, at the swap; a waiter at every poll), and a tree of a million
 * files takes seconds to walk. Changes made after the first look are found by the next run.
 */
const verdicts = new Map<string, Promise<SealComparison>>();

/**
 * How the tree at `location` (the one `manifest` names) compares with the seal it was
 * published with (tree-seal.ts); "holds" for a manifest without one (a dsfetch before
 * 2026-12-07). A directory in it that this user may not read was not made by dsfetch
 * (published directories are 0555): "changed".
 */
export function sealVerdict(
  location: DatasetLocation,
  manifest: Manifest,
  progressed?: () => void,
): Promise<SealComparison> {
  const { seal } = manifest;
  // None (a dsfetch before 2026-12-07), or of another form (another version's): not used.
  if (!isTreeSeal(seal)) return Promise.resolve({ verdict: "holds", madeWritable: false });
  const { tree } = manifest as Partial<PendingManifest>;
  const key = [
    location.path,
    tree?.ino,
    tree?.birth,
    seal.entries,
    seal.shape,
    seal.times,
    seal.readOnly,
    seal.readable,
  ].join("\0");
  const known = verdicts.get(key);
  if (known !== undefined) return known;
  // A tree of many files is walked with synchronous calls: watched (publish.ts likewise).
  const sync = manifest.files.length > SYNC_WALK_FROM_FILES;
  if (sync) syncStorageCallsAhead();
  const verdict = compareSeal(location.path, seal, { sync, progressed }).catch(
    (error: NodeJS.ErrnoException): SealComparison => {
      if (error.code === "EACCES" || error.code === "EPERM") {
        return { verdict: "changed", madeWritable: false, change: unreadableInWords(error.code) };
      }
      throw error;
    },
  );
  verdicts.set(key, verdict);
  // A walk that failed (the storage, a tree moved away) is not remembered.
  verdict.catch(() => verdicts.delete(key));
  return verdict;
}
