/**
 * What stands at a dataset's final path, and whether dsfetch may replace it.
 *
 * dsfetch replaces only what it published itself, for the same source: a directory it did
 * not write (a hand-made `<data-root>/imagenet`, a user's `/scratch/imagenet` under an
 * ephemeral root) and another source's dataset under the same name (`s3://b/projA/train/`
 * and `s3://b/projB/train/` are both `train`) are refused with PATH_TAKEN and left alone
 * (found in review, 2026-12-05: both were moved aside and deleted, the second while jobs
 * read it). "Published by dsfetch" is its manifest. A publish stopped between its tree's
 * rename and its manifest's (a SIGKILL, a call given up on) leaves a tree without one, so
 * each publish first writes its manifest as a pending manifest of its own
 * (`<manifest>.pending.<random part of its attempt's name>`), naming the tree that goes in and the one it replaces, and
 * renames it into place last: a tree a pending manifest names is dsfetch's. One per attempt:
 * two publishers (a lock lost or taken over) never write each other's (review: one shared
 * file paired one worker's tree with the other's manifest).
 */
import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type SourceAt, sameSource, sourceLabel } from "../config/s3-uri.ts";
import { DsfetchError } from "../errors.ts";
import { ATTEMPT_RANDOM, attemptRandom, parseAttemptName } from "./attempt.ts";
import { hostLabel } from "./host-label.ts";
import type { DatasetLocation } from "./layout.ts";
import { type Manifest, manifestReadRefusal, readManifest, type WrittenFiles } from "./manifest.ts";
import { chmodDir } from "./no-follow.ts";

const PENDING = ".pending.";

/**
 * The pending manifest of the attempt directory `attemptDir`: named by the attempt's random
 * part only (`<dir>.json.pending.<random>`), as the whole attempt name after the manifest's
 * would not fit in a file name for long dataset names (review, 2026-12-05: such a dataset
 * failed at publish, after its whole download).
 */
export function pendingManifestPath(location: DatasetLocation, attemptDir: string): string {
  return `${location.manifestPath}${PENDING}${attemptRandom(attemptDir)}`;
}

/** A pending manifest: the manifest, and the trees it vouches for. */
export interface PendingManifest extends Manifest<WrittenFiles> {
  /** Identity of the tree being published (treeIdentity). */
  readonly tree: TreeIdentity;
  /** Identity of the tree it replaces, when it replaces one. */
  readonly replacing?: TreeIdentity | undefined;
}

/**
 * What identifies a directory across renames, from every host: its inode number, and its
 * birth time where the filesystem keeps a real one (a freed inode number reused by a
 * user's directory then differs). Not the device: on NFS it is a number of each client's
 * mount (review). Where there is no birth time, the inode alone.
 */
export interface TreeIdentity {
  readonly ino: string;
  readonly birth?: string | undefined;
}

/**
 * Whether the filesystem of `dir` keeps birth times this process sees: a directory made
 * there keeps its birth time through a chmod that changes its change time. Not where there is
 * none (0: NFS, ext4's small inodes), nor without statx (Linux before 4.11, an old seccomp
 * profile: Node reports the change time in its place, which a rename and a chmod change;
 * review: every tree would then have been refused). Asked once per directory and process,
 * by a probe made in `dir` (a private one: the attempts' directory). Looking at old
 * directories instead misjudged a machine whose `/` and `/tmp` keep no birth time while new
 * directories do (review).
 */
const birthProbes = new Map<string, Promise<boolean>>();
export function birthTimesHold(dir: string): Promise<boolean> {
  let probe = birthProbes.get(dir);
  if (probe === undefined) {
    probe = probeBirthTimes(dir).catch(() => false);
    birthProbes.set(dir, probe);
  }
  return probe;
}

/**
 * The probe directory's name starts like an attempt's (`<name>.<host>.<pid>.`), so that the
 * clean-up removes one left by a process killed while it probed (cleanup.ts; seen in the
 * SIGKILL test: `.birth-probe-*` left after the rerun).
 */
export const BIRTH_PROBE_NAME = ".birth-probe";

async function probeBirthTimes(dir: string): Promise<boolean> {
  const path = await mkdtemp(join(dir, `${BIRTH_PROBE_NAME}.${hostLabel()}.${process.pid}.`));
  try {
    const before = await lstat(path, { bigint: true });
    if (before.birthtimeNs === 0n) return false;
    // Past the kernel's coarse clock tick (4 ms at most), so that the chmod changes the
    // change time for certain.
    await sleep(15);
    await chmodDir(path, 0o755);
    const after = await lstat(path, { bigint: true });
    return after.ctimeNs !== before.ctimeNs && after.birthtimeNs === before.birthtimeNs;
  } finally {
    await rm(path, { recursive: true, force: true });
  }
}

/**
 * The identity of what is at `path`; undefined when nothing is there. `recordingIn`: for a
 * pending manifest, a private directory on the same filesystem where birthTimesHold may
 * probe; the birth time is recorded only where it holds (else the inode alone).
 */
export async function treeIdentity(
  path: string,
  recordingIn?: string,
): Promise<TreeIdentity | undefined> {
  return (await occupantAt(path, recordingIn))?.identity;
}

/**
 * What stands at `path`: its identity (treeIdentity), and whether it is a symbolic link
 * (never dsfetch's: it publishes directories only, and never follows a link there).
 */
async function occupantAt(
  path: string,
  recordingIn?: string,
): Promise<{ identity: TreeIdentity; link: boolean } | undefined> {
  const stats = await lstat(path, { bigint: true }).catch((error: NodeJS.ErrnoException) => {
    // Nothing there: not even the directories above it.
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return undefined;
    throw error;
  });
  if (stats === undefined) return undefined;
  // 0 where the filesystem keeps no birth time (NFS). Not "birth differs from change time":
  // a directory made and written within one clock tick (~4 ms) has both equal, and its
  // inode number may be one just freed (seen in a test: ext4 gave a removed tree's inode to
  // the user's directory made in its place). (Without statx, Node reports the change time as
  // the birth time, which a rename changes: a stopped publish's tree is then refused, never
  // another's replaced.)
  const known =
    stats.birthtimeNs > 0n && (recordingIn === undefined || (await birthTimesHold(recordingIn)));
  const birth = known ? String(stats.birthtimeNs) : undefined;
  const identity = { ino: String(stats.ino), ...(birth === undefined ? {} : { birth }) };
  return { identity, link: stats.isSymbolicLink() };
}

/** Whether two identities are of one tree (by inode, and birth time where both have one). */
export function sameTree(a: TreeIdentity | undefined, b: TreeIdentity): boolean {
  if (a === undefined || typeof a.ino !== "string" || a.ino !== b.ino) return false;
  return a.birth === undefined || b.birth === undefined || a.birth === b.birth;
}

/**
 * The pending manifests beside the dataset's manifest: file name, path, and its attempt
 * (the random part of its name; a dsfetch before 2026-12-05 wrote the whole name). Matched
 * exactly: a dataset may be named `y.json.pending.abc`, and its manifest is no pending
 * manifest of `y` (review: the clean-up of `y` removed it).
 */
async function pendingFiles(
  location: DatasetLocation,
): Promise<{ name: string; path: string; attempt: string }[]> {
  const dirName = basename(location.path);
  const prefix = `${basename(location.manifestPath)}${PENDING}`;
  const dir = dirname(location.manifestPath);
  const names = await readdir(dir).catch((): string[] => []);
  return names.flatMap((name) => {
    if (!name.startsWith(prefix)) return [];
    const attempt = name.slice(prefix.length).replace(/\.tmp$/, "");
    const ours = ATTEMPT_RANDOM.test(attempt) || parseAttemptName(attempt)?.dirName === dirName;
    return ours ? [{ name, path: join(dir, name), attempt }] : [];
  });
}

/**
 * The pending manifest that names the tree `identity`, if any (dsfetch's, mid-publish).
 * `goingIn`: only one naming it as the tree it brings in, whose metadata describes it (one
 * that names it as the tree it replaces is a third publisher's, of other data: second review,
 * 2026-12-07).
 */
export async function pendingNaming(
  location: DatasetLocation,
  identity: TreeIdentity,
  { goingIn = false }: { readonly goingIn?: boolean } = {},
): Promise<PendingManifest | undefined> {
  for (const { name, path } of await pendingFiles(location)) {
    if (name.endsWith(".tmp")) continue;
    try {
      const pending = JSON.parse(await readFile(path, "utf8")) as PendingManifest;
      // Its name is compared too (otherNameError): a damaged one without is no voucher.
      if (typeof pending.uri !== "string" || typeof pending.name !== "string") continue;
      if (sameTree(pending.tree, identity)) return pending;
      if (!goingIn && sameTree(pending.replacing, identity)) return pending;
    } catch {
      // Gone meanwhile (renamed into place), or not ours to read: not a voucher.
    }
  }
  return undefined;
}

/** Single-quoted for a POSIX shell. */
function quoted(path: string): string {
  return `'${path.replaceAll("'", `'\\''`)}'`;
}

/**
 * The final path holds something dsfetch did not publish: never replaced. `named`: the
 * manifest there, which names another directory (a copy of the storage: its trees have new
 * inode numbers); the error said "no manifest of dsfetch's names it" as if there were none
 * (exploratory review, 2026-12-07).
 */
export function notOursError(
  dataset: string,
  location: DatasetLocation,
  named?: Manifest,
  there?: TreeIdentity,
): DsfetchError {
  const tree = (named as Partial<PendingManifest> | undefined)?.tree;
  if (named !== undefined && tree !== undefined) {
    const inodes = there === undefined ? "" : ` (inode ${tree.ino}, not ${there.ino})`;
    const remove = `remove it once no job uses it: chmod -R u+w ${quoted(location.path)} && rm -r ${quoted(location.path)}`;
    return new DsfetchError(
      "PATH_TAKEN",
      `${dataset}: ${location.path} is already there, but its manifest ${location.manifestPath} names another directory than this one${inodes}: a copy of the storage (cp -a, rsync), a directory moved or copied there by hand, or storage whose inode numbers change between clients or mounts (CIFS noserverino, some FUSE filesystems); dsfetch never replaces data it cannot tell it published`,
      {
        dataset,
        expected: "the directory its manifest names",
        found: `${location.path}, another directory`,
        // Without a seal (a manifest before 2026-12-07), the tree field is all that ties it
        // to its data: not offered then (review, 2026-12-07).
        hint:
          named.seal === undefined
            ? `${remove}; the next run stages it again`
            : `if it is a copy of the dataset dsfetch published there, remove the "tree" field from ${quoted(location.manifestPath)}: dsfetch then uses it, compared with its seal; otherwise ${remove}`,
      },
    );
  }
  return new DsfetchError(
    "PATH_TAKEN",
    `${dataset}: ${location.path} is already there, and dsfetch did not publish it (no manifest of dsfetch's names it, in ${dirname(location.manifestPath)}): dsfetch never replaces data it did not write`,
    {
      dataset,
      expected: "nothing, or a dataset published by dsfetch",
      found: `${location.path}, not published by dsfetch`,
      hint: `move ${quoted(location.path)} away, or give the dataset another "name" (or another storage root). If dsfetch published it and its manifest was lost, remove it once no job uses it: chmod -R u+w ${quoted(location.path)} && rm -r ${quoted(location.path)}`,
    },
  );
}

/**
 * The final path holds a directory whose manifest is there but damaged (not JSON, cut short,
 * a field of the wrong type): dsfetch cannot tell what it holds, nor that it published it, so
 * it is never replaced; `list` says the same of it ("is damaged"). The error said "dsfetch did
 * not publish it (no manifest of dsfetch's names it …)", and the manifest went unnamed
 * (README audit, 2026-12-07).
 */
export function damagedManifestError(dataset: string, location: DatasetLocation): DsfetchError {
  return new DsfetchError(
    "PATH_TAKEN",
    `${dataset}: ${location.path} is already there, but its manifest ${location.manifestPath} is damaged (not a manifest dsfetch can read: cut short or edited), so dsfetch cannot tell what it holds; dsfetch never replaces data it cannot tell it published`,
    {
      dataset,
      expected: `a manifest dsfetch can read at ${location.manifestPath}`,
      found: "a damaged manifest",
      hint: `once no job uses it, remove the directory and its manifest: chmod -R u+w ${quoted(location.path)} && rm -r ${quoted(location.path)} ${quoted(location.manifestPath)}; the next run stages it again (or move both away, to keep them)`,
    },
  );
}

/**
 * Whether a manifest file is at the dataset's manifest path that readManifest cannot read as
 * one (a regular file: looked at without opening, as a FIFO would block; readable, which
 * unreadableManifest told apart before). Read again: one renamed into place since is whole.
 */
async function manifestDamaged(location: DatasetLocation): Promise<boolean> {
  const info = await lstat(location.manifestPath).catch(() => undefined);
  if (info?.isFile() !== true) return false;
  return (await readManifest(location.manifestPath)) === undefined;
}

/**
 * The final path is a symbolic link (`mv data/ds data/ds.old; ln -s /elsewhere data/ds`):
 * never dsfetch's, which publishes directories only, and never replaced or followed, so that
 * nothing behind it is touched. Said as such (exploratory review, 2026-12-07): it read as a
 * directory its manifest does not name, a copy of the storage, with the hint to remove the
 * manifest's "tree" field, after which every fetch downloaded the dataset and then failed
 * to move the link aside ("a part of …/replaced.X is a file, not a directory").
 */
export function symbolicLinkError(
  dataset: string,
  location: DatasetLocation,
  target: string | undefined,
): DsfetchError {
  const to = target === undefined ? "" : ` to ${target}`;
  return new DsfetchError(
    "PATH_TAKEN",
    `${dataset}: ${location.path} is a symbolic link${to}, not a directory dsfetch published: dsfetch never replaces a symbolic link at a dataset's path nor follows it (nothing${to === "" ? " it points to" : ` in ${target}`} is read or changed)`,
    {
      dataset,
      expected: "nothing, or a directory published by dsfetch",
      found: `a symbolic link${to}`,
      hint: `remove the link (not what it points to): rm ${quoted(location.path)}, and leave the manifest ${quoted(location.manifestPath)} as it is; then run again: the dataset is staged there anew (or, if the dataset's own directory was moved away for the link, move it back instead: it is reused as it was). To keep datasets on other storage, give that storage as the storage root (--storage-root) rather than linking a dataset's directory`,
    },
  );
}

/**
 * A manifest beside the dataset (or a pending one) that this user may not read: which source
 * and version the tree holds cannot be told, so it is neither reused nor replaced. STORAGE,
 * never "dsfetch did not publish it" with a hint to remove it: that was said of valid
 * datasets whose manifest a teammate wrote 0600 (review, 2026-12-06). No fallback to an
 * ephemeral volume, as for another user's stale lock (lock.ts StaleLockNotOurs): shared
 * storage is there and writable, and a fallback would download a private copy at every run
 * while the one file stays unreadable.
 */
export function unreadableManifestError(
  dataset: string,
  location: DatasetLocation,
  unreadable: UnreadableManifest,
): DsfetchError {
  const { path, error, blocked, ownerUid } = unreadable;
  const code = error.code ?? "EACCES";
  const why = code === "EPERM" ? "operation not permitted" : "permission denied";
  const owner = ownerUid === undefined ? "its owner" : `its owner (uid ${ownerUid})`;
  const fix = blocked === path ? `chmod a+r ${quoted(path)}` : `chmod a+rx ${quoted(blocked)}`;
  return new DsfetchError(
    "STORAGE",
    `${dataset}: cannot read the manifest ${path} (${code}: ${why}${blocked === path ? "" : `: ${blocked} cannot be searched`}), so this user cannot tell which source and version ${location.path} holds; dsfetch neither reuses nor replaces it`,
    {
      dataset,
      expected: `${blocked} readable by every user of the team`,
      found: `${blocked === path ? "a manifest" : "a directory"} this user may not read (${code})`,
      hint: `ask ${owner} or root to run: ${fix} (e.g. made under umask 077 by a dsfetch before 2026-12-06), then run again; ${location.path} is left as it is`,
      cause: error,
    },
  );
}

/** A manifest this user may not read (unreadableManifest). */
export interface UnreadableManifest {
  readonly path: string;
  readonly error: NodeJS.ErrnoException;
  /** What refuses this user: the manifest, or its directory when even a stat is refused. */
  readonly blocked: string;
  readonly ownerUid?: number | undefined;
}

/**
 * The manifest or pending manifest of the dataset that is there but that this user may not
 * read; undefined when there is none.
 */
async function unreadableManifest(
  location: DatasetLocation,
): Promise<UnreadableManifest | undefined> {
  const pending = (await pendingFiles(location)).filter(({ name }) => !name.endsWith(".tmp"));
  for (const path of [location.manifestPath, ...pending.map((file) => file.path)]) {
    const error = await manifestReadRefusal(path);
    if (error === undefined) continue;
    // A stat needs no read permission on the file, only a directory this user may search.
    const owner = await stat(path).then(
      (info) => ({ blocked: path, ownerUid: info.uid }),
      () => undefined,
    );
    if (owner !== undefined) return { path, error, ...owner };
    const dir = dirname(path);
    const ownerUid = await stat(dir).then(
      (info) => info.uid,
      () => undefined,
    );
    return { path, error, blocked: dir, ownerUid };
  }
  return undefined;
}

/** The final path holds another source's dataset under the same name: never replaced. */
export function otherSourceError(
  dataset: string,
  location: DatasetLocation,
  theirSource: SourceAt,
  ourSource: SourceAt,
): DsfetchError {
  // The same URI on two stores: said with their endpoints.
  const stores = sameSource(theirSource.uri, ourSource.uri);
  const theirs = stores ? sourceLabel(theirSource) : theirSource.uri;
  const ours = stores ? sourceLabel(ourSource) : ourSource.uri;
  return new DsfetchError(
    "PATH_TAKEN",
    `${dataset}: ${location.path} holds ${theirs}, not ${ours}: two sources under one dataset name; dsfetch does not replace one with the other (jobs may be reading it)`,
    {
      dataset,
      expected: ours,
      found: theirs,
      hint: `give one of the two datasets its own "name". If ${ours} now takes the place of ${theirs}, remove the old one first, once no job uses it: chmod -R u+w ${quoted(location.path)} && rm -r ${quoted(location.path)} ${quoted(location.manifestPath)}`,
    },
  );
}

/** PATH_TAKEN: the directory is another dataset's of the same source (occupantProblem). */
export function otherNameError(
  dataset: string,
  location: DatasetLocation,
  theirs: Manifest,
): DsfetchError {
  const pinned = theirs.etag === undefined ? "" : ` (ETag ${theirs.etag})`;
  return new DsfetchError(
    "PATH_TAKEN",
    `${dataset}: ${location.path} holds the dataset "${theirs.name}"${pinned} of the same source, whose directory this dataset's name makes too (a dataset's directory is its name, followed by "-" and its etag when it has one): dsfetch does not replace another dataset's copy`,
    {
      dataset,
      expected: `the directory of "${dataset}"`,
      found: `the directory of "${theirs.name}"`,
      hint: `give this dataset another "name" (one that does not end in "-" and an etag); if "${theirs.name}" is no longer used, remove its copy first (\`dsfetch prune\`, or by hand once no job uses it)`,
    },
  );
}

/**
 * Whether `manifest` describes the tree `identity`: a manifest written since 2026-12-05 names
 * its tree (from its pending manifest), and one over another tree is not its (two publishers
 * after a lock lost: review); an older manifest names none and is taken at its word.
 */
export function manifestNames(manifest: Manifest, identity: TreeIdentity | undefined): boolean {
  const { tree } = manifest as Partial<PendingManifest>;
  if (tree === undefined) return true;
  return identity !== undefined && sameTree(tree, identity);
}

/** The manifest beside the dataset, if it describes the tree at its path. */
export async function manifestOfTree(location: DatasetLocation): Promise<Manifest | undefined> {
  const manifest = await readManifest(location.manifestPath);
  if (manifest === undefined) return undefined;
  const there = await occupantAt(location.path).catch(() => undefined);
  // A symbolic link is no tree of a manifest's, even one without a "tree" field (a dsfetch
  // before 2026-12-05, or the field removed by hand): list, prune and leases never go
  // through it.
  if (there?.link === true) return undefined;
  return manifestNames(manifest, there?.identity) ? manifest : undefined;
}

/**
 * Why the dataset `ours` (its URI) may not be published at `location`: undefined when it
 * may (nothing at the final path, a tree of the same source, or one dsfetch was publishing).
 * `manifest`: the manifest as the caller read it, possibly before a publisher completed.
 */
export async function occupantProblem(
  dataset: string,
  location: DatasetLocation,
  ours: SourceAt,
  manifest: Manifest | undefined,
): Promise<DsfetchError | undefined> {
  // By URI: the same URI from another store is judged where a job would be given it, or it
  // would be replaced under jobs (plan.ts pinnedOverOtherVersion); one server under two names
  // must not make every dataset staged under the other name PATH_TAKEN (review, 2026-12-06).
  const judge = (theirs: Manifest) => {
    if (!sameSource(theirs.uri, ours.uri)) return otherSourceError(dataset, location, theirs, ours);
    // The same source, another dataset's directory: "x" pinned to ETag E and "x-E" unpinned,
    // of two datasets arrays, share `x-E`; the unpinned one replaced the pinned one's copy
    // with the source's newer version (exploratory tester, 2026-12-07). One array is refused
    // at parse time (config/datasets-array.ts); across arrays, here.
    return theirs.name.toLowerCase() === dataset.toLowerCase()
      ? undefined
      : otherNameError(dataset, location, theirs);
  };
  for (let look = 1; ; look++) {
    const there = await occupantAt(location.path);
    // Nothing there (a manifest alone, its tree removed by hand, is replaced).
    if (there === undefined) return undefined;
    // Before any manifest: one without a "tree" field would vouch for whatever is there.
    if (there.link) {
      const target = await readlink(location.path).catch(() => undefined);
      return symbolicLinkError(dataset, location, target);
    }
    const { identity } = there;
    if (look === 1 && manifest !== undefined && manifestNames(manifest, identity)) {
      return judge(manifest);
    }
    const pending = await pendingNaming(location, identity);
    if (pending !== undefined) return judge(pending);
    // Its publisher may have renamed the pending manifest into place since the caller read
    // (seen in the crowd test: 8 workers, one read between the two).
    const now = await readManifest(location.manifestPath);
    if (now !== undefined && manifestNames(now, identity)) return judge(now);
    // One this user may not read may name it: not known to be "not dsfetch's".
    const unreadable = await unreadableManifest(location);
    if (unreadable !== undefined) return unreadableManifestError(dataset, location, unreadable);
    // A manifest there that does not parse (cut short, edited): said as such, as `list` says
    // it, not as "no manifest of dsfetch's names it" (README audit, 2026-12-07).
    if (now === undefined && (await manifestDamaged(location))) {
      return damagedManifestError(dataset, location);
    }
    // Looked at once more before concluding: another publisher's swap may have landed since
    // the first look (its manifest, read above, names its own tree, not the one looked at).
    // Once: a tree that changes at every look is judged at the next run.
    if (look === 1) {
      const again = await treeIdentity(location.path);
      if (again === undefined || !sameTree(again, identity)) continue;
    }
    return notOursError(dataset, location, now, identity);
  }
}

/**
 * The same, for a look before any download (the reuse check, plan): storage that cannot be
 * read here (EACCES, a dead mount: ENOTCONN, ESTALE) is not judged, so that the storage
 * check that follows decides, and may fall back to an ephemeral volume (review: these were
 * INTERNAL errors). A manifest that is there but that this user may not read is judged (a
 * STORAGE error, unreadableManifestError): said now, not after a whole download, at publish.
 */
export async function occupantProblemIfKnown(
  dataset: string,
  location: DatasetLocation,
  ours: SourceAt,
  manifest: Manifest | undefined,
): Promise<DsfetchError | undefined> {
  return occupantProblem(dataset, location, ours, manifest).catch(() => undefined);
}

/**
 * Whether the tree at the final path is one the pending manifest `pending` names (ours, or
 * the one we replace): then the pending manifest must stay, whatever the publish said.
 */
export async function pathHoldsNamedTree(
  location: DatasetLocation,
  pending: Pick<PendingManifest, "tree" | "replacing">,
): Promise<boolean> {
  const identity = await treeIdentity(location.path).catch(() => undefined);
  if (identity === undefined) return false;
  return sameTree(pending.tree, identity) || sameTree(pending.replacing, identity);
}

/**
 * Removes pending manifests left behind (a SIGKILL or a given-up rename before the tree went
 * in, or a withdrawal that failed): one whose attempt directory is gone and that names no
 * tree at the path. Else they would pile up, and name inode numbers the filesystem gives
 * out again (review). Best effort; returns how many were removed.
 */
export async function removeStalePending(location: DatasetLocation): Promise<number> {
  let removed = 0;
  const pending = await pendingFiles(location);
  if (pending.length === 0) return 0;
  const attempts = await readdir(location.tmpDir).catch((): string[] => []);
  for (const { name, path, attempt } of pending) {
    // `attempt`: the random part of its attempt's name (a dsfetch before 2026-12-05 wrote the
    // whole name).
    const alive = attempt.includes(".")
      ? attempts.includes(attempt)
      : attempts.some((dir) => attemptRandom(dir) === attempt);
    if (alive) continue;
    if (!name.endsWith(".tmp")) {
      try {
        const pending = JSON.parse(await readFile(path, "utf8")) as PendingManifest;
        if (await pathHoldsNamedTree(location, pending)) continue;
      } catch {
        // Unreadable: it vouches for nothing.
      }
    }
    await rm(path, { force: true }).then(
      () => {
        removed += 1;
      },
      () => {},
    );
  }
  return removed;
}
