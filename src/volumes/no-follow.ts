/**
 * Files dsfetch writes in a team's storage, never through a link put where one of them goes.
 *
 * Why: the bookkeeping directories are as writable as the data directory (shared-dirs.ts),
 * so any member of a team's group may rename, remove and plant entries there. A symbolic link
 * planted at a pending manifest's name (its random part is the attempt directory's, which the
 * group may list) made a user's, or root's, `fetch` overwrite any file with the manifest and
 * chmod it 0644; one planted at `used/<dataset>` made it truncate any file (review, 2026-12-07).
 * New files are made with O_CREAT|O_EXCL|O_NOFOLLOW (neither a link nor a file already there
 * is written through: a hard link to another's file is one); files of our own written again
 * with O_NOFOLLOW; nothing waits on a FIFO (O_NONBLOCK).
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { chmod, type FileHandle, lstat, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

const NEW =
  constants.O_WRONLY |
  constants.O_CREAT |
  constants.O_EXCL |
  constants.O_NOFOLLOW |
  constants.O_NONBLOCK;
const EXISTING = constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** Opens a file that must not exist yet, for writing (EEXIST for anything there, a link too). */
export function openNewFile(path: string, mode = 0o644): Promise<FileHandle> {
  return open(path, NEW, mode);
}

/** Writes `data` to a new file at `path` (EEXIST for anything there, a link too). */
export async function writeNewFile(path: string, data: string, mode = 0o644): Promise<void> {
  const handle = await openNewFile(path, mode);
  try {
    // Readable by every user of the team whatever the umask (open's mode is masked by it);
    // through the handle: by its name, a link put there meanwhile would be followed. Never
    // fatal (a filesystem that refuses chmod).
    if (((await handle.stat()).mode & 0o777) !== mode) await handle.chmod(mode).catch(() => {});
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
}

/** Writes `data` over an existing file of ours, never through a link (ELOOP) or into a FIFO. */
export async function rewriteFile(path: string, data: string): Promise<void> {
  const handle = await open(path, EXISTING | constants.O_TRUNC);
  try {
    if (!(await handle.stat()).isFile()) throw Object.assign(new Error(path), { code: "EINVAL" });
    await handle.writeFile(data);
  } finally {
    await handle.close();
  }
}

/** Sets an existing file's times through a handle (utimes by path follows a link). */
export async function touchFile(path: string, time: Date): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    await handle.utimes(time, time);
  } finally {
    await handle.close();
  }
}

/**
 * `path` made anew, empty, whoever's it was: a new file beside it renamed over it (a rename
 * replaces a link, never follows it). Any member of the team may do it where only its owner
 * may set a file's times (utimes: EPERM), so a teammate's use of a dataset counts as its
 * last use (it did not: prune removed datasets used every day by others; review, 2026-12-07).
 * Its mtime is the storage's clock (the server's, on NFS).
 */
export async function replaceWithEmptyFile(path: string): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeNewFile(temporary, "");
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => {});
    throw error;
  }
}

const DIRECTORY = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * chmod of a directory through a handle: by its name, a link a teammate put there (a
 * dataset's, an attempt's or a probe's name in a group-writable directory) would be followed,
 * and root's prune made, say, /etc/shadow 0755 (review, 2026-12-07). ELOOP/ENOTDIR for a link.
 */
export async function chmodDir(path: string, mode: number): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, DIRECTORY);
  } catch (error) {
    // A directory of ours that we may not even open (a job's `chmod 0` in a dataset it
    // changed): by its name, once lstat says it is a directory of ours, not a link. Its
    // removal failed on it, and the replaced tree stayed in .dsfetch/tmp for good
    // (exploratory review, 2026-12-07). Root opens any directory: never here.
    if ((error as NodeJS.ErrnoException).code !== "EACCES") throw error;
    const found = await lstat(path);
    if (!found.isDirectory() || found.uid !== process.getuid?.()) throw error;
    // Not in a directory others may write (a team's data or .dsfetch/tmp): a teammate could
    // swap it for a link between the lstat and the chmod (review). Left for its owner.
    if (((await lstat(dirname(path))).mode & 0o022) !== 0) throw error;
    await chmod(path, mode);
    return;
  }
  try {
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

/** A directory's times set to `time`, through a handle (never through a link). */
export async function touchDir(path: string, time: Date): Promise<void> {
  const handle = await open(path, DIRECTORY);
  try {
    await handle.utimes(time, time);
  } finally {
    await handle.close();
  }
}
