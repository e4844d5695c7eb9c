/**
 * Can shared storage take this dataset? It must be mounted (the root exists and is a
 * directory: dsfetch never creates a storage root, since an empty directory where a volume
 * should be mounted means the volume is missing), writable, and have room for it.
 */

import type { Stats, StatsFs } from "node:fs";
import { constants } from "node:fs";
import { access, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { formatBytes } from "../config/size.ts";
import { bookkeepingRefusal, makeSharedDir } from "./shared-dirs.ts";
import { makeProbeFile } from "./storage-probe.ts";

/**
 * Why shared storage cannot take `bytes` more, or undefined when it can. `create: false`
 * (`plan`, which writes nothing) looks at the nearest existing directory above a missing
 * data root instead of making it.
 */
/** Why shared storage cannot take a dataset; `space`: only too little room (it may be freed). */
export interface StorageProblem {
  readonly reason: string;
  readonly space: boolean;
}

/**
 * Inodes a staging takes beside its files, at least: the lock, its attempt directory and the
 * data directory in it, the pending manifest (renamed into the manifest). Its holder file,
 * lease and last-use file are best effort: not counted, so that this stays a lower bound.
 */
const BOOKKEEPING_INODES = 4;

/**
 * Why a filesystem with `ffree` free inodes cannot hold `files` more (each object of a
 * folder takes one; an archive counts as one, its entries unknown before it is read;
 * directories are not counted: a lower bound), or undefined. Filesystems that count none
 * (btrfs, CIFS, vfat, tmpfs without nr_inodes: 0 of 0) never run out.
 *
 * Why: a folder of many small objects onto storage with bytes free but too few inodes
 * was written until the last inode went, then fell back and was downloaded again into an
 * ephemeral volume, and `plan` said it fitted (exploratory tester 2, 2026-12-07).
 */
export function inodeShortage(
  dir: string,
  found: { readonly files: number; readonly ffree: number },
  files: number,
): string | undefined {
  const needed = files + BOOKKEEPING_INODES;
  if (found.files === 0 || found.ffree >= needed) return undefined;
  return `${dir} has ${found.ffree} free inodes (the files and directories its filesystem can still hold: df -i), the dataset needs at least ${needed}`;
}

export async function sharedStorageProblem(
  storageRoot: string,
  dataRoot: string,
  bytes: number,
  { create = true, files = 1 }: { readonly create?: boolean; readonly files?: number } = {},
): Promise<StorageProblem | undefined> {
  const other = (reason: string): StorageProblem => ({ reason, space: false });
  try {
    const root = await stat(storageRoot);
    if (!root.isDirectory()) return other(`${storageRoot} is not a directory`);
  } catch {
    return other(`${storageRoot} does not exist (is the shared volume mounted?)`);
  }
  let existing = dataRoot;
  try {
    if (create) await makeSharedDir(dataRoot, { plain: true });
    else {
      existing = await nearestExisting(dataRoot, storageRoot);
      // A file there is writable too: said as fetch says it (review: plan said "yes").
      if (!(await stat(existing)).isDirectory()) {
        throw Object.assign(new Error(`${existing} is not a directory`), { code: "ENOTDIR" });
      }
    }
    await access(existing, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    return other(await notWritable(dataRoot, storageRoot, code));
  }
  // Writable, but its bookkeeping perhaps not (another user's directories: shared-dirs.ts).
  const refused = await bookkeepingRefusal(dataRoot, { repair: create });
  if (refused !== undefined) return other(refused);
  if (create) await makeProbeFile(dataRoot);
  try {
    const fs = await statfs(existing);
    const free = fs.bavail * fs.bsize;
    if (free < bytes) {
      return {
        reason: `${dataRoot} has ${formatBytes(free)} (${free} bytes) free, the dataset needs ${formatBytes(bytes)} (${bytes} bytes)`,
        space: true,
      };
    }
    const inodes = inodeShortage(dataRoot, fs, files);
    if (inodes !== undefined) return { reason: inodes, space: true };
  } catch {
    // statfs unsupported: let the write itself tell.
  }
  return undefined;
}

/**
 * Why the data root cannot be written, naming the directory that refused: a missing team
 * directory under a root only its owner may write said "<root>/<team>/data is not writable",
 * a directory that did not exist (session 40's note).
 */
async function notWritable(dataRoot: string, storageRoot: string, code: string): Promise<string> {
  if (code === "EROFS") return `${dataRoot} is on a read-only filesystem (EROFS)`;
  if (code === "ENOENT") {
    return `${dataRoot} could not be made: ${storageRoot} went away meanwhile (is the shared volume still mounted?)`;
  }
  if (code === "EEXIST" || code === "ENOTDIR") {
    // A file where a directory of the layout goes (`<team>/data` a file): "not writable
    // (EEXIST)" named no cause (exploratory review, 2026-12-07).
    const inTheWay = await firstNonDirectory(dataRoot);
    if (inTheWay === dataRoot) {
      return `${dataRoot} exists and is not a directory (move it away: datasets go in a directory there)`;
    }
    if (inTheWay !== undefined) {
      return `${inTheWay} is in the way: it exists and is not a directory, and ${dataRoot} goes below it (move it away)`;
    }
  }
  if (code !== "EACCES" && code !== "EPERM") return `${dataRoot} is not writable (${code})`;
  // The nearest directory there is: walked up through the ones this user may not even look
  // into (a root-only 0700 storage root hides whether <root>/t exists: review, 2026-12-07).
  let refusing: string | undefined;
  let found: Stats | undefined;
  for (let at = dataRoot; found === undefined; at = dirname(at)) {
    try {
      found = await stat(at);
      refusing = at;
    } catch {
      if (at === storageRoot || dirname(at) === at) break;
    }
  }
  if (refusing === undefined || found === undefined) return `${dataRoot} is not writable (${code})`;
  const uid = process.getuid?.();
  const owner = `uid ${found.uid}'s, group ${found.gid}, mode ${(found.mode & 0o7777).toString(8).padStart(4, "0")}`;
  if (modesLetWrite(found)) {
    // Its modes let this user write: something else refused. Naming its owner and mode
    // would mislead (review, 2026-12-07).
    const what =
      uid === 0
        ? "the server (root_squash: root is another user on NFS), an ACL or a security module (SELinux, AppArmor)"
        : "an ACL, a security module (SELinux, AppArmor) or the server (NFS root_squash) refused";
    return `${dataRoot} is not writable (${code}), although the modes of ${refusing} (it is ${owner}) let this user (uid ${uid ?? "?"}) write: ${what}${uid === 0 ? " refused" : ""}`;
  }
  const who = `this user (uid ${uid ?? "?"}): it is ${owner}`;
  if (refusing === dataRoot) return `${dataRoot} is not writable by ${who} (${code})`;
  return `${dataRoot} cannot be made: ${refusing} is not writable by ${who} (${code}); its owner (or root) can make ${dataRoot} with \`mkdir -p\` and give it to this user or its group`;
}

/** Whether `found`'s mode bits let this process write and search it (root: always). */
function modesLetWrite(found: Stats): boolean {
  const uid = process.getuid?.();
  if (uid === undefined || uid === 0) return true;
  const groups = new Set([process.getgid?.(), ...(process.getgroups?.() ?? [])]);
  const bits =
    found.uid === uid
      ? (found.mode >> 6) & 0o7
      : groups.has(found.gid)
        ? (found.mode >> 3) & 0o7
        : found.mode & 0o7;
  return (bits & 0o3) === 0o3;
}

/** `dir`, or its nearest ancestor that exists (never above `top`). */
async function nearestExisting(dir: string, top: string): Promise<string> {
  for (let at = dir; ; at = dirname(at)) {
    try {
      await stat(at);
      return at;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || at === top || dirname(at) === at) {
        throw error;
      }
    }
  }
}

/**
 * Bytes free for this user where `dir` is or will be (its nearest existing ancestor: it is
 * made later, with the attempt's modes); undefined when it cannot tell (the writes will).
 */
export async function freeBytes(dir: string): Promise<number | undefined> {
  const found = await statfsWhere(dir);
  return found === undefined ? undefined : found.bavail * found.bsize;
}

/** statfs of `dir`, or of its nearest existing ancestor; undefined when it cannot tell. */
export async function statfsWhere(dir: string): Promise<StatsFs | undefined> {
  for (let at = dir; ; at = dirname(at)) {
    try {
      return await statfs(at);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || dirname(at) === at) {
        return undefined;
      }
    }
  }
}

/** The first of `path` and its parents that exists and is not a directory, top down. */
async function firstNonDirectory(path: string): Promise<string | undefined> {
  const chain: string[] = [];
  for (let at = path; ; at = dirname(at)) {
    chain.unshift(at);
    if (dirname(at) === at) break;
  }
  for (const at of chain) {
    const found = await stat(at).catch(() => undefined);
    if (found === undefined) return undefined;
    if (!found.isDirectory()) return at;
  }
  return undefined;
}
