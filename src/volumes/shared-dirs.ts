/**
 * Directories dsfetch makes in a team's storage, as usable by the team as the directory they
 * are made in.
 *
 * Why: a team's storage is often one directory several users write, as a group (2775, setgid)
 * or as everyone (0777). The bookkeeping directories (`.dsfetch/locks`, `tmp`, `manifests`,
 * `leases/<dataset>`, …) took the umask of the first user's process: 0755 (umask 022) or
 * 0700 (077). Every other user's job then failed to stage any new dataset (STORAGE "cannot
 * write to …/locks/x.lock: permission denied"), could not take a lease on the ones it used,
 * and could not take a dead teammate's stale lock over (the design item "several uids in one
 * team directory", open since 2026-12-06; reproduced with two users of one group, 2026-12-07).
 *
 * The rule: a directory made here gets 0755, plus the group's rwx when the directory whose
 * mode rules (the data root, for everything under `.dsfetch`) is group-writable, and then also
 * that directory's group (a 0775 data root without setgid: mkdir gives the creator's primary
 * group, whose members are not the team; when the group cannot be given, no group bits),
 * plus everyone's rwx when it is writable by everyone, plus setgid when it has it. Never the
 * sticky bit, and nothing more under a sticky one (a /tmp-like place: there a teammate could
 * not remove a dead holder's lock or lease anyway, and a world-writable directory is nobody's
 * team). Whatever the umask: chmod after mkdir. A directory this user made earlier without
 * those bits (an older dsfetch, a umask) is given them the first time this process meets it;
 * another user's cannot be (only its owner may chmod), and the storage check says whose it is
 * and what to run (bookkeepingRefusal).
 *
 * Every chmod and chown is made through a handle opened with O_NOFOLLOW on the very directory
 * expected (checked by /proc/self/fd, or by realpath where /proc is missing): a teammate who
 * may rename entries of a group-writable `.dsfetch` could otherwise put a symbolic link where a
 * bookkeeping directory was, and the next run (root's prune from cron, or a teammate's) would
 * open up whatever it points to (found in review of the first version, 2026-12-07).
 *
 * Never fatal: a filesystem that refuses chmod (some NFS and FUSE mounts) keeps what mkdir
 * made, as before.
 */

import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { access, mkdir, open, readlink, realpath, rename, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { META_DIR } from "./layout.ts";

const STICKY = 0o1000;
const SETGID = 0o2000;
const GROUP_BITS = 0o070;

/** The mode for a directory made where `parentMode` rules (the rule above, group aside). */
export function sharedDirMode(parentMode: number): number {
  if ((parentMode & STICKY) !== 0) return 0o755;
  let mode = 0o755;
  if ((parentMode & 0o020) !== 0) mode |= GROUP_BITS;
  if ((parentMode & 0o002) !== 0) mode |= 0o007;
  if ((parentMode & SETGID) !== 0) mode |= SETGID;
  return mode;
}

/**
 * The directory whose mode rules for `path`: the one holding the last `.dsfetch` of a
 * bookkeeping path (the data root, or an ephemeral root; names of datasets and teams never
 * start with "."); else the directory the first one made was made in (`first`: mkdir's
 * answer), or `path`'s parent.
 */
export function modeSource(path: string, first?: string): string {
  const marker = `${sep}${META_DIR}`;
  const at = path.lastIndexOf(`${marker}${sep}`);
  if (at > 0) return path.slice(0, at);
  if (path.endsWith(marker) && path.length > marker.length) return path.slice(0, -marker.length);
  return dirname(first ?? path);
}

/** Directories met already by this process (made, or looked at and widened if ours). */
const settled = new Set<string>();

export interface SharedDirOptions {
  /**
   * Not a bookkeeping path (a missing team or data directory): its mode comes from the
   * directory the first one is made in, whatever `.dsfetch` its ancestors' names hold (a
   * storage root under `~/.dsfetch/`).
   */
  readonly plain?: boolean;
}

/**
 * `mkdir -p path`, every directory it makes given the mode of the rule above before it
 * appears at its name, and those of the chain from the ruling directory down that were there
 * before (`.dsfetch`, made by an older dsfetch) widened once if this user's. Errors of the
 * mkdir are thrown as they are; the modes are best effort.
 *
 * Each missing directory is made under a hidden name of its own, given its mode and group,
 * then renamed into place: made where it goes and then chmod'ed, it was there with the umask's
 * mode for a moment, and a teammate's run starting at the same time met `.dsfetch` or `locks`
 * 2700: STORAGE, or a fallback that downloaded the dataset again (6 users at once under umask
 * 077: 13 of 120 runs; review, 2026-12-07).
 */
export async function makeSharedDir(path: string, options: SharedDirOptions = {}): Promise<void> {
  const missing = await missingDirs(path);
  if (missing.length === 0 && settled.has(path)) return;
  const first = missing[0];
  const plain = options.plain === true;
  const source = plain ? dirname(first ?? path) : modeSource(path, first);
  const firstMade = first === undefined ? undefined : resolve(first);
  for (const dir of missing) {
    // A ruling directory that was missing itself (a data root made by a bookkeeping call):
    // it and those above it are ruled by where the first was made.
    const ruledBy =
      firstMade !== undefined && within(resolve(source), resolve(dir))
        ? dirname(firstMade)
        : source;
    await makeDirInPlace(dir, ruledBy);
  }
  // Those there before, under `.dsfetch` only (plain: a team's or data directory's mode and
  // group are its owner's choice, not ours: review, 2026-12-07).
  if (plain) return;
  const ruling = await rulingStat(source);
  if (ruling === undefined) return;
  const made = new Set(missing.map((dir) => resolve(dir)));
  const chain: string[] = [];
  for (let at = path; at !== source && dirname(at) !== at; at = dirname(at)) chain.push(at);
  for (const dir of chain.reverse()) {
    if (made.has(resolve(dir)) || settled.has(dir)) continue;
    if (await settle(dir, source, ruling, false)) settled.add(dir);
  }
}

/** `a` is `b` or below it. */
function within(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}${sep}`);
}

/** The directories of `path` that do not exist, top down (none when it exists). */
async function missingDirs(path: string): Promise<string[]> {
  const missing: string[] = [];
  for (let at = path; ; at = dirname(at)) {
    let found: Stats;
    try {
      found = await stat(at);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || dirname(at) === at) throw error;
      missing.push(at);
      continue;
    }
    // What `mkdir -p` says of a file in the way.
    if (!found.isDirectory()) {
      const error = new Error(`EEXIST: file already exists, mkdir '${at}'`);
      throw Object.assign(error, { code: "EEXIST", errno: -17, syscall: "mkdir", path: at });
    }
    return missing.reverse();
  }
}

/** The directories this process is making now (makeDirInPlace), by absolute path. */
const making = new Map<string, Promise<void>>();

/**
 * Makes `dir` (its parent exists) with the mode `ruledBy` rules, all at once: under a hidden
 * name, given its mode, then renamed into place. Another process that made it meanwhile wins.
 *
 * rename(2) replaces a directory that is empty, and the one it replaces is gone for whoever
 * was making the first entry in it: that mkdir or open fails ENOENT, its path there all along
 * (a CI failure, 2026-12-07: two datasets of one `fetch` made `.dsfetch/tmp` at once, and the
 * other's attempt failed STORAGE "a parent directory does not exist"; 3 in 1,500 runs
 * reproduced it). So one making per directory in this process, the others wait for it; one
 * found there just before the rename is kept; and the first entry made in a shared
 * directory is made again when it fails so (retryWhereReplaced), for another process's
 * rename in the moment between that look and ours.
 */
async function makeDirInPlace(dir: string, ruledBy: string): Promise<void> {
  const key = resolve(dir);
  const other = making.get(key);
  if (other !== undefined) {
    await other.catch(() => {});
    if (await isDirectory(dir)) return;
  }
  const mine = makeDirInPlaceNow(dir, ruledBy);
  making.set(key, mine);
  try {
    await mine;
  } finally {
    if (making.get(key) === mine) making.delete(key);
  }
}

async function makeDirInPlaceNow(dir: string, ruledBy: string): Promise<void> {
  const temporary = join(dirname(dir), `.${basename(dir)}.mk-${randomBytes(6).toString("hex")}`);
  try {
    // In a parent just made, perhaps replaced meanwhile by another maker's (see above): made
    // again there, not by the plain mkdir below, which would give it the umask's mode (review).
    await retryWhereReplaced(dirname(dir), () => mkdir(temporary, { mode: 0o700 }));
  } catch (refused) {
    // The plain mkdir makes it (or finds it made meanwhile), or says what is wrong (EACCES,
    // ENOSPC, ENOENT on `dir`); except on a read-only filesystem, where Node's recursive
    // mkdir says ENOENT (Node 24), and the storage check said the root "went away"
    // (exploratory review, 2026-12-07): the first refusal is the answer then.
    await mkdir(dir, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
      const first = (refused as NodeJS.ErrnoException).code;
      throw error.code === "ENOENT" && first !== undefined && first !== "ENOENT" ? refused : error;
    });
    return;
  }
  const ruling = await rulingStat(ruledBy);
  if (ruling !== undefined) await settle(temporary, ruledBy, ruling, true);
  // Made meanwhile by another process: theirs stays (a rename would replace it while empty).
  if (await isDirectory(dir)) {
    await rmdir(temporary).catch(() => {});
    return;
  }
  try {
    await rename(temporary, dir);
    settled.add(dir);
  } catch (error) {
    await rmdir(temporary).catch(() => {});
    const code = (error as NodeJS.ErrnoException).code;
    // Made by another process meanwhile: not empty, or a rename that may not replace it.
    if (code !== "EEXIST" && code !== "ENOTEMPTY" && code !== "EPERM" && code !== "EACCES") {
      throw error;
    }
    await mkdir(dir, { recursive: true });
  }
}

/**
 * Gives `dir` the rule's mode (and group): exactly, when this process `made` it; otherwise
 * only the bits it lacks, and only if it is this user's. Best effort, never through a link.
 * True when it looked at the directory (there, and the one expected).
 */
async function settle(dir: string, source: string, ruling: Stats, made: boolean): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    const expected = join(await realpath(source), relative(source, dir));
    handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    if (!(await isAt(handle, expected))) return false;
    const found = await handle.stat();
    if (!made && found.uid !== process.getuid?.()) return true;
    let wanted = sharedDirMode(ruling.mode);
    if ((wanted & 0o020) !== 0 && found.gid !== ruling.gid) {
      // Group-writable only for the team's group: the creator's own group is not the team.
      const given = await handle.chown(-1, ruling.gid).then(
        () => true,
        () => false,
      );
      // Not given: the group's bits as everyone's (a root open to all, 0777, stays open to all:
      // Linux judges a member of the file's group by the group bits alone), else r-x.
      if (!given) wanted = (wanted & ~GROUP_BITS) | 0o050 | ((wanted & 0o007) << 3);
    }
    const mode = found.mode & 0o7777;
    // setgid comes from a setgid parent by mkdir itself; a chmod without it would clear it.
    const next = made ? wanted | (mode & SETGID) : mode | wanted;
    if (next !== mode) await handle.chmod(next).catch(() => {});
    return true;
  } catch {
    // Gone, refused, a link, not a directory: the writes that follow say what is wrong.
    return false;
  } finally {
    await handle?.close().catch(() => {});
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (found) => found.isDirectory(),
    () => false,
  );
}

/** How many times retryWhereReplaced makes an entry, at most. */
const REPLACED_TRIES = 3;

/**
 * Runs `create`, the making of an entry in `dir` (made by makeSharedDir); again, up to
 * REPLACED_TRIES times in all, when it fails ENOENT while `dir` is there: another process
 * renamed its own new `dir` over the empty one `create` was making its entry in (see
 * makeDirInPlace). Once `dir` holds an entry, no rename can replace it.
 */
export async function retryWhereReplaced<T>(dir: string, create: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await create();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" || tries >= REPLACED_TRIES || !(await isDirectory(dir))) throw error;
    }
  }
}

/** Whether the open directory is the one at `expected` (a real path). */
async function isAt(handle: Awaited<ReturnType<typeof open>>, expected: string): Promise<boolean> {
  try {
    return (await readlink(`/proc/self/fd/${handle.fd}`)) === expected;
  } catch {
    // No /proc: the directory at `expected` now is the one open (a link put there later does
    // not change what the handle is).
    try {
      const [opened, there] = await Promise.all([handle.stat(), stat(expected)]);
      return opened.dev === there.dev && opened.ino === there.ino;
    } catch {
      return false;
    }
  }
}

async function rulingStat(source: string): Promise<Stats | undefined> {
  try {
    return await stat(source);
  } catch {
    return undefined;
  }
}

/** The bookkeeping directories under `.dsfetch` ("" is `.dsfetch` itself). */
const BOOKKEEPING = ["", "locks", "tmp", "manifests", "leases", "removals", "used", "failures"];
/** Those a staging writes in: its lock, its attempt, its manifest. */
const NEEDED_TO_STAGE = ["", "locks", "tmp", "manifests"];

/**
 * Why this user cannot stage into `dataRoot` although it may write there: a bookkeeping
 * directory another user made without the team's bits (an older dsfetch, a umask), or
 * undefined. With `repair`, this user's own such directories are widened first (once per
 * process), which is how an older installation heals: each user's next run fixes theirs.
 */
export async function bookkeepingRefusal(
  dataRoot: string,
  { repair }: { readonly repair: boolean },
): Promise<string | undefined> {
  const ruling = await rulingStat(dataRoot);
  if (ruling === undefined) return undefined;
  if (repair) await widenBookkeeping(dataRoot, ruling);
  const meta = join(dataRoot, META_DIR);
  for (const kind of NEEDED_TO_STAGE) {
    const dir = kind === "" ? meta : join(meta, kind);
    try {
      await access(dir, constants.W_OK | constants.X_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") return await refusal(dir, meta, ruling);
    }
  }
  return undefined;
}

/**
 * This user's bookkeeping directories under `dataRoot` given the team's bits they lack, once
 * per process (a staging, and a reuse: markUsed); with `dataset`, its own lease and removal
 * directories too. Best effort.
 */
export async function widenBookkeeping(
  dataRoot: string,
  ruling?: Stats,
  dataset?: string,
): Promise<void> {
  const meta = join(dataRoot, META_DIR);
  const dirs = BOOKKEEPING.map((kind) => (kind === "" ? meta : join(meta, kind)));
  if (dataset !== undefined) {
    dirs.push(join(meta, "leases", dataset), join(meta, "removals", dataset));
    // Its manifest, if this user's and written 0600 by a dsfetch before 2026-12-06: every
    // teammate's job on it failed STORAGE until its owner ran chmod by hand.
    const manifest = join(meta, "manifests", `${dataset}.json`);
    if (!settled.has(manifest)) {
      settled.add(manifest);
      await readableByAll(manifest);
    }
  }
  if (dirs.every((dir) => settled.has(dir))) return;
  const stats = ruling ?? (await rulingStat(dataRoot));
  if (stats === undefined) return;
  for (const dir of dirs) {
    if (settled.has(dir)) continue;
    if (await settle(dir, dataRoot, stats, false)) settled.add(dir);
  }
}

/** A file of this user's given the read bits of 0644 it lacks, through a handle. Best effort. */
async function readableByAll(path: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const found = await handle.stat();
    const mode = found.mode & 0o7777;
    if (found.isFile() && found.uid === process.getuid?.() && (mode & 0o644) !== 0o644) {
      await handle.chmod(mode | 0o644);
    }
  } catch {
    // Not there, not ours to read: the reader's message says what to do.
  } finally {
    await handle?.close().catch(() => {});
  }
}

/** Whose `dir` is and its mode, for a message ("uid 1001's, group 100, mode 0755"), or "". */
export async function ownerOf(dir: string): Promise<string> {
  try {
    const found = await stat(dir);
    return `uid ${found.uid}'s, group ${found.gid}, mode ${octal(found.mode)}`;
  } catch {
    return "";
  }
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0");

async function refusal(dir: string, meta: string, ruling: Stats): Promise<string> {
  const me = process.getuid?.();
  const owner = await ownerOf(dir);
  const found = owner === "" ? "" : `: it is ${owner}`;
  const where = `${dir} is not writable by this user (uid ${me})${found}, where its data directory is group ${ruling.gid}, mode ${octal(ruling.mode)}`;
  if ((ruling.mode & STICKY) !== 0 || (ruling.mode & 0o022) === 0) {
    return `${where}; its owner (or root) can make it writable by this user`;
  }
  // Whom the data directory lets write: everyone, or its group (which the directory must have).
  const fix =
    (ruling.mode & 0o002) !== 0
      ? `chmod -R a+rwX ${meta}`
      : `chgrp -R ${ruling.gid} ${meta} && chmod -R g+rwX ${meta}`;
  return `${where}; its owner (or root) can run \`${fix}\` (a dsfetch of 2026-12-07 or later makes these directories as writable as the data directory, and widens its own user's)`;
}
