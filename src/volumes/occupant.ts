/**
 * What stands at a dataset's final path, and whether dsfetch may replace it.
 *
 * dsfetch replaces only what it published itself, for the same source: a directory it did
 * not write (a hand-made `<data-root>/imagenet`, a user's `/scratch/imagenet` under an
 * ephemeral root) and another source's dataset under the same name (`s3://b/projA/train/`
 * and `s3://b/projB/train/` are both `train`) are refused with PATH_TAKEN and left alone
 * (found in review, 2026-12-05: both were moved aside and deleted, the second while jobs
 * read it). "Published by dsfetch" is its manifest; a publish stopped between its tree's
 * rename and its manifest's (a SIGKILL, a call given up on) leaves a tree without one, so the
 * manifest is first written as `<manifest>.pending`, naming the tree that goes in and the
 * one it replaces by identity (device, inode, birth time: kept by a rename), and renamed
 * into place last: a tree the pending manifest names is dsfetch's.
 */
import { lstat, readFile } from "node:fs/promises";
import { DsfetchError } from "../errors.ts";
import type { DatasetLocation } from "./layout.ts";
import type { Manifest } from "./manifest.ts";

/** The manifest of a publish in progress: renamed to the manifest once its tree is in. */
export function pendingManifestPath(location: DatasetLocation): string {
  return `${location.manifestPath}.pending`;
}

/** A pending manifest: the manifest, and the trees it vouches for. */
export interface PendingManifest extends Manifest {
  /** Identity of the tree being published (treeIdentity). */
  readonly tree: string;
  /** Identity of the tree it replaces, when it replaces one. */
  readonly replacing?: string | undefined;
}

/**
 * What identifies a directory across renames on one filesystem: device and inode, and the
 * birth time where the filesystem keeps one (an inode number freed and reused by a user's
 * directory does not match then). Undefined when nothing is there.
 */
export async function treeIdentity(path: string): Promise<string | undefined> {
  const stats = await lstat(path, { bigint: true }).catch((error: NodeJS.ErrnoException) => {
    // Nothing there: not even the directories above it.
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return undefined;
    throw error;
  });
  if (stats === undefined) return undefined;
  return `${stats.dev}:${stats.ino}:${stats.birthtimeNs}`;
}

/** Whether the pending manifest vouches for the tree `identity` (dsfetch's, mid-publish). */
export async function pendingVouchesFor(
  location: DatasetLocation,
  identity: string,
): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(pendingManifestPath(location), "utf8");
  } catch {
    return false;
  }
  try {
    const pending = JSON.parse(text) as Partial<PendingManifest>;
    return pending.tree === identity || pending.replacing === identity;
  } catch {
    return false;
  }
}

/** The final path holds something dsfetch did not publish: never replaced. */
export function notOursError(dataset: string, location: DatasetLocation): DsfetchError {
  return new DsfetchError(
    "PATH_TAKEN",
    `${dataset}: ${location.path} is already there, and dsfetch did not publish it (no manifest at ${location.manifestPath}): dsfetch never replaces data it did not write`,
    {
      dataset,
      expected: "nothing, or a dataset published by dsfetch",
      found: `${location.path} without a manifest`,
      hint: `move ${location.path} away, or give the dataset another "name" (or another storage root). If dsfetch published it and the manifest was lost, remove it (chmod -R u+w, then rm -r) once no job uses it`,
    },
  );
}

/** The final path holds another source's dataset under the same name: never replaced. */
export function otherSourceError(
  dataset: string,
  location: DatasetLocation,
  theirs: Manifest,
  ours: string,
): DsfetchError {
  return new DsfetchError(
    "PATH_TAKEN",
    `${dataset}: ${location.path} holds ${theirs.uri}, not ${ours}: two sources under one dataset name; dsfetch does not replace one with the other (jobs may be reading it)`,
    {
      dataset,
      expected: ours,
      found: theirs.uri,
      hint: `give one of the two datasets its own "name". If ${ours} now takes the place of ${theirs.uri}, remove the old one first, once no job uses it: chmod -R u+w ${location.path} && rm -r ${location.path} ${location.manifestPath}`,
    },
  );
}

/**
 * Why the dataset `ours` (its URI) may not be published at `location`, given the manifest
 * beside it: undefined when it may (nothing at the final path, a tree of the same source,
 * or one dsfetch was publishing).
 */
export async function occupantProblem(
  dataset: string,
  location: DatasetLocation,
  ours: string,
  manifest: Manifest | undefined,
): Promise<DsfetchError | undefined> {
  const identity = await treeIdentity(location.path);
  // Nothing there (a manifest alone, its tree removed by hand, is replaced).
  if (identity === undefined) return undefined;
  if (manifest !== undefined) {
    return manifest.uri === ours ? undefined : otherSourceError(dataset, location, manifest, ours);
  }
  return (await pendingVouchesFor(location, identity))
    ? undefined
    : notOursError(dataset, location);
}
