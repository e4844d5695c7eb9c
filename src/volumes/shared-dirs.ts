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
 * The rule: a directory made here gets 0755, plus the group's rwx when the directory it is
 * in (the data root, for everything under `.dsfetch`) is group-writable, plus everyone's rwx
 * when that is writable by everyone, plus setgid when that has it (files then keep the team's
 * group). Never the sticky bit, and nothing more under a sticky parent (a /tmp-like place:
 * there a teammate could not remove a dead holder's lock or lease anyway, and a world-writable
 * directory is nobody's team). Whatever the umask: chmod after mkdir. A directory this user
 * made earlier without those bits (an older dsfetch, a umask) is given them the first time
 * this process meets it; another user's cannot be (only its owner may chmod), and the storage
 * check says whose it is and what to run (storage-check.ts).
 *
 * Never fatal: a filesystem that refuses chmod (some NFS and FUSE mounts) keeps what mkdir
 * made, as before.
 */
import { constants } from "node:fs";
import { access, chmod, mkdir, stat } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { META_DIR } from "./layout.ts";

const STICKY = 0o1000;
const SETGID = 0o2000;

/** The mode for a directory made inside one of mode `parentMode` (the rule above). */
export function sharedDirMode(parentMode: number): number {
  if ((parentMode & STICKY) !== 0) return 0o755;
  let mode = 0o755;
  if ((parentMode & 0o020) !== 0) mode |= 0o070;
  if ((parentMode & 0o002) !== 0) mode |= 0o007;
  if ((parentMode & SETGID) !== 0) mode |= SETGID;
  return mode;
}

/**
 * The directory whose mode sets the rule for `path`: the one holding `.dsfetch` for any path
 * inside it (the data root, or an ephemeral root); else the directory the first one made was
 * made in (`first`: mkdir's answer), or `path`'s parent.
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

/**
 * `mkdir -p path`, every directory it makes (and `path` itself when it was there already and
 * is this user's) given the mode of the rule above. Errors of the mkdir are thrown as they are;
 * the chmods are best effort.
 */
export async function makeSharedDir(path: string): Promise<void> {
  const first = await mkdir(path, { recursive: true });
  if (first === undefined && settled.has(path)) return;
  const source = modeSource(path, first);
  const wanted = await wantedMode(source);
  if (wanted === undefined) return;
  // From `path` up to the source: those this call made get the mode; those there before
  // (`.dsfetch` made by the storage probe's shell under the umask, or by an older dsfetch)
  // are widened once if this user's.
  const chain: string[] = [];
  for (let at = path; at !== source && dirname(at) !== at; at = dirname(at)) chain.push(at);
  const firstMade = first === undefined ? undefined : resolve(first);
  let made = false;
  for (const dir of chain.reverse()) {
    if (resolve(dir) === firstMade) made = true;
    if (made) await setMode(dir, wanted);
    else if (!settled.has(dir)) await widenIfOurs(dir, wanted);
    settled.add(dir);
  }
}

/** `dir`'s mode, if this user's and missing bits of `wanted`, given them. Best effort. */
export async function widenIfOurs(dir: string, wanted: number): Promise<void> {
  try {
    const found = await stat(dir);
    if (found.uid !== process.getuid?.()) return;
    const mode = found.mode & 0o7777;
    if ((mode & wanted) === wanted) return;
    await chmod(dir, mode | wanted);
  } catch {
    // Not ours to judge (gone, unreadable): the writes that follow say what is wrong.
  }
}

async function wantedMode(source: string): Promise<number | undefined> {
  try {
    return sharedDirMode((await stat(source)).mode);
  } catch {
    return undefined;
  }
}

async function setMode(dir: string, wanted: number): Promise<void> {
  try {
    // setgid is inherited from a setgid parent by mkdir itself; chmod without it would clear
    // it, so it is kept whatever the rule says.
    const found = await stat(dir);
    await chmod(dir, wanted | (found.mode & SETGID));
  } catch {
    // Refused (a filesystem without chmod): mkdir's mode stays.
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
  let rootMode: number;
  try {
    rootMode = (await stat(dataRoot)).mode;
  } catch {
    return undefined;
  }
  if (repair) await widenBookkeeping(dataRoot, rootMode);
  const meta = join(dataRoot, META_DIR);
  for (const kind of NEEDED_TO_STAGE) {
    const dir = kind === "" ? meta : join(meta, kind);
    try {
      await access(dir, constants.W_OK | constants.X_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") return await refusal(dir, meta, rootMode);
    }
  }
  return undefined;
}

/**
 * This user's bookkeeping directories under `dataRoot` given the team's bits they lack, once
 * per process (a staging, and a reuse: markUsed). Best effort.
 */
export async function widenBookkeeping(dataRoot: string, rootMode?: number): Promise<void> {
  const meta = join(dataRoot, META_DIR);
  let mode = rootMode;
  if (mode === undefined) {
    try {
      mode = (await stat(dataRoot)).mode;
    } catch {
      return;
    }
  }
  const wanted = sharedDirMode(mode);
  for (const kind of BOOKKEEPING) {
    const dir = kind === "" ? meta : join(meta, kind);
    if (settled.has(dir)) continue;
    await widenIfOurs(dir, wanted);
    settled.add(dir);
  }
}

async function refusal(dir: string, meta: string, rootMode: number): Promise<string> {
  const me = process.getuid?.();
  const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0");
  let owner = "";
  try {
    const found = await stat(dir);
    owner = `: it is uid ${found.uid}'s, mode ${octal(found.mode)}`;
  } catch {
    // Said without its owner.
  }
  // Whom the data directory lets write: its group, or everyone.
  const who = (rootMode & 0o002) !== 0 ? "a" : "g";
  return (
    `${dir} is not writable by this user (uid ${me})${owner}, where its data directory is ${octal(rootMode)}; ` +
    `its owner (or root) can run \`chmod -R ${who}+rwX ${meta}\` (a dsfetch of 2026-12-07 or later makes these directories as writable as the data directory, and widens its own user's)`
  );
}
