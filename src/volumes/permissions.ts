/**
 * Published datasets are read-only (SPEC §2: "files are never writable by the job"): files
 * 0444, directories 0555. That also means removing a tree (a failed attempt, a replaced
 * dataset, prune) must first give directories their write bit back when not running as root.
 */
import { chmodSync, constants, opendirSync, statSync } from "node:fs";
import { lstat, open, readdir, rm, rmdir, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { mainThreadAlive } from "../util/main-thread-beat.ts";
import { chmodDir } from "./no-follow.ts";

export interface ReadOnlyOptions {
  /** Leave `root` itself writable (it is still to be renamed into place). */
  readonly keepRoot?: boolean;
  /**
   * Every regular file below `root` was created by dsfetch's own writers, which create them
   * read-only already (0444, or 0555 when executable: src/fetch/download-*.ts,
   * src/archive/tar-extract.ts and zip-extract.ts, with O_EXCL). Then only the directories
   * need a chmod, and files are not even stat'ed (20,000 stats were ~0.1 s of a 1.4 s
   * fetch of a 20,000-file tar) — unless the process umask took read or execute bits from
   * them at creation (umask 077: 0400), which only the walk puts back.
   */
  readonly filesCreatedReadOnly?: boolean;
}

/**
 * The walk gives the event loop a turn this often: a long one (a million files on network
 * storage at ~1 ms a call) held back the lock's refreshes past DSFETCH_LOCK_STALE, and
 * waiters took the lock over and downloaded the dataset again (review, 2026-12-06).
 */
const TURN_EVERY_MS = 20;

/**
 * Makes every file (0444, or 0555 when it was executable) and every directory (0555) below
 * `root` read-only; `root` itself too unless `keepRoot`. Links are left as they are (their
 * own mode means nothing on Linux). Sync calls: ~3 us each, against ~90 us for async ones,
 * with a turn for the event loop (timers: the lock's refresh) every TURN_EVERY_MS
 * (`turnEveryMs`: tests). The walk is by hand because Node's recursive readdir stats every
 * entry once more.
 */
export async function makeReadOnly(
  root: string,
  options: ReadOnlyOptions = {},
  turnEveryMs = TURN_EVERY_MS,
): Promise<void> {
  const statFiles = options.filesCreatedReadOnly !== true || !umaskKeepsReadAndExecute();
  let turnAt = performance.now() + turnEveryMs;
  const turn = async (): Promise<void> => {
    if (performance.now() < turnAt) return;
    // A timer, not setImmediate: expired timers run only in the loop's timers phase.
    await sleep(0);
    turnAt = performance.now() + turnEveryMs;
  };
  const dirs: string[] = [];
  const toWalk = [root];
  for (let dir = toWalk.pop(); dir !== undefined; dir = toWalk.pop()) {
    // Entries read a few at a time, not as one array: a directory of 400,000 objects made
    // 400,000 Dirents at once at the end of its folder's download, ~60 MB of peak RSS.
    const listing = opendirSync(dir, { bufferSize: 256 });
    try {
      for (let entry = listing.readSync(); entry !== null; entry = listing.readSync()) {
        // Each call is short, the walk may not be (1 ms per call on network storage, a
        // million files): it is progress, not a stuck thread (cli/main-thread-watchdog.ts).
        mainThreadAlive();
        const path = `${dir}/${entry.name}`;
        if (entry.isDirectory()) {
          dirs.push(path);
          toWalk.push(path);
        } else if (statFiles && entry.isFile()) {
          const mode = statSync(path).mode & 0o7777;
          const wanted = (mode & 0o111) !== 0 ? 0o555 : 0o444;
          if (mode !== wanted) chmodSync(path, wanted);
        }
      }
    } finally {
      listing.closeSync();
    }
    await turn();
  }
  // Deepest first, so a directory is still writable while its children change.
  for (const dir of dirs.sort((a, b) => b.length - a.length)) {
    mainThreadAlive();
    chmodSync(dir, 0o555);
    await turn();
  }
  if (options.keepRoot !== true) chmodSync(root, 0o555);
}

/** Whether files created 0444/0555 keep exactly that mode under this process's umask. */
function umaskKeepsReadAndExecute(): boolean {
  // Reading the umask (no argument) is allowed in every thread; only setting it is not.
  return (process.umask() & 0o555) === 0;
}

/**
 * Why this user may not replace the published tree at `path`, or undefined. Replacing moves
 * it aside, which needs its write bit back (makeWritable), and only its owner (or root) may
 * chmod it: a teammate's run on a team's storage downloaded the new version whole, then failed
 * STORAGE "cannot write to <path>: permission denied" at the swap, at every run (2026-12-07).
 * Tried (a chmod to the mode it has, through a handle that follows no link), not judged by
 * uids: where a filesystem maps owners (CIFS `uid=`, NFSv4 ids as nobody, FUSE), the owner
 * seen is not who may chmod.
 */
export async function replaceRefusal(
  path: string,
  {
    lookOnly = false,
    copy = "an older copy",
  }: {
    readonly lookOnly?: boolean;
    /** What is there, in words (copyInWords): "an older copy" unless said otherwise. */
    readonly copy?: string;
  } = {},
): Promise<string | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EACCES"
      ? unopenableRefusal(path, copy)
      : undefined;
  }
  try {
    const found = await handle.stat();
    if (lookOnly) {
      // `plan` writes nothing, not even a chmod to the same mode: judged by owner (root may).
      const me = process.getuid?.();
      if (me === undefined || me === 0 || found.uid === me) return undefined;
    } else {
      try {
        await handle.chmod(found.mode & 0o7777);
        return undefined;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "EPERM" && code !== "EACCES") return undefined;
      }
    }
    return `${path} holds ${copy} staged by uid ${found.uid}, which this user (uid ${process.getuid?.()}) may not replace (its read-only directories are that user's: only they or root can open them again); that user or root refreshes it with \`dsfetch fetch\` or removes it with \`dsfetch prune\``;
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * replaceRefusal for a tree whose top directory this user may not even open (its owner's
 * `chmod 0`): moving it aside needs its write bit back, which chmodDir gives by name only in a
 * directory no one else may write (no-follow.ts). In a team's data directory it cannot, and
 * every run downloaded the dataset whole, then failed STORAGE at the swap, although its
 * warning said it would stage its own copy (exploratory tester, 2026-12-07).
 */
async function unopenableRefusal(path: string, copy: string): Promise<string | undefined> {
  try {
    const found = await lstat(path);
    if (!found.isDirectory()) return undefined;
    const me = process.getuid?.();
    const parentOpen = ((await lstat(dirname(path))).mode & 0o022) !== 0;
    if (found.uid === me && !parentOpen) return undefined;
    const mode = (found.mode & 0o7777).toString(8).padStart(4, "0");
    // Its owner's bits let it be opened: another refusal (SELinux, AppArmor), not a chmod.
    if ((found.mode & 0o500) === 0o500) {
      return `${path} holds ${copy} whose own directory this user (uid ${me}) cannot open (EACCES, mode ${mode}: refused by something other than its mode, such as SELinux or AppArmor), so it cannot be moved aside; whoever may open it refreshes it with \`dsfetch fetch\` or removes it with \`dsfetch prune\``;
    }
    return found.uid === me
      ? `${path} holds ${copy} whose own directory its owner, this user (uid ${me}), made unreadable (mode ${mode}): dsfetch changes no mode by name in ${dirname(path)}, which others may write, so it cannot move it aside; run \`chmod u+rwx ${path}\`, and the next run replaces it`
      : `${path} holds ${copy} staged by uid ${found.uid}, whose own directory that user made unreadable (mode ${mode}): this user (uid ${me}) may not replace it; that user or root refreshes it with \`dsfetch fetch\` (after \`chmod u+rwx ${path}\`) or removes it with \`dsfetch prune\``;
  } catch {
    return undefined;
  }
}

/**
 * What a published copy about to be replaced is, for replaceRefusal: this version changed
 * since it was published (inspect.ts), an older one (changed too, or not).
 */
export function copyInWords(altered: boolean, thisVersion: boolean): string {
  if (!altered) return "an older copy";
  return thisVersion
    ? "a copy changed since it was published,"
    : "an older copy, changed since it was published,";
}

/** Gives a directory its owner write bit back (before moving it to another parent, or removing it). */
export async function makeWritable(path: string): Promise<void> {
  await chmodDir(path, 0o755).catch(() => {});
}

/** Removes a tree whatever its permissions. Never throws. */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch {
    // Read-only directories (not root): open them up, then try again.
  }
  try {
    // Top down, each directory opened up before it is read: one a job made unreadable
    // (`chmod 0`) stopped a recursive readdir, and the tree stayed (exploratory review).
    const openUp = async (dir: string): Promise<void> => {
      await makeWritable(dir);
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (entry.isDirectory()) await openUp(join(dir, entry.name));
      }
    };
    await openUp(path);
    await rm(path, { recursive: true, force: true });
  } catch {
    // Best effort: leftovers are cleaned by the next run (volumes/cleanup.ts).
  }
}

/**
 * Removes a tree entry by entry, calling `progressed` after each one, so that a removal
 * that keeps going (a large tree on slow network storage) is never taken for hung storage
 * by the clock it runs under (stage/storage-calls.ts), and one that stops is. Links are
 * removed, never followed. A few calls at once (one at a time it took 3.4 s for 20,000
 * files on ext4 against 1.0 s for `rm -r`: found in review; 8 at once, 1.7-2.0 s against
 * 1.9-2.4 s). `signal` stops it between entries. The first error stops it too, and is thrown
 * once nothing of it is in flight any more (found in review: deletions went on after it).
 */
export async function removeTreeReporting(
  path: string,
  progressed: () => void,
  signal?: AbortSignal,
): Promise<void> {
  const removal: Removal = { progressed, signal, slots: REMOVE_CONCURRENCY, queue: [] };
  await removeEntry(path, removal);
}

interface Removal {
  readonly progressed: () => void;
  readonly signal: AbortSignal | undefined;
  /** Calls that may still start (shared by the whole tree: not 8 per directory). */
  slots: number;
  readonly queue: (() => void)[];
  failure?: { readonly error: unknown };
}

/** Calls on storage made by a removal at once. */
const REMOVE_CONCURRENCY = 8;

async function withSlot<T>(removal: Removal, work: () => Promise<T>): Promise<T> {
  if (removal.slots === 0) await new Promise<void>((resolve) => removal.queue.push(resolve));
  else removal.slots -= 1;
  try {
    return await work();
  } finally {
    const next = removal.queue.shift();
    if (next === undefined) removal.slots += 1;
    else next();
  }
}

async function removeEntry(path: string, removal: Removal): Promise<void> {
  removal.signal?.throwIfAborted();
  try {
    // Most entries are files: one call each.
    await withSlot(removal, () => unlink(path));
    removal.progressed();
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    if (code === "EPERM") {
      // Some systems answer a directory's unlink so; a file's EPERM (immutable, sticky
      // parent) is that file's error.
      const stats = await withSlot(removal, () => lstat(path));
      if (!stats.isDirectory()) throw error;
    } else if (code !== "EISDIR") throw error;
  }
  // Read-only directories (published trees) take no unlink below them unless root.
  await withSlot(removal, () => makeWritable(path));
  const names = await withSlot(removal, () => readdir(path));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length && removal.failure === undefined) {
      const name = names[next++] as string;
      try {
        if (removal.signal?.aborted === true) throw removal.signal.reason;
        await removeEntry(join(path, name), removal);
      } catch (error) {
        removal.failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(REMOVE_CONCURRENCY, names.length) }, worker));
  if (removal.failure !== undefined) throw removal.failure.error;
  await withSlot(removal, () => rmdir(path));
  removal.progressed();
}
