/**
 * A notice that the tree at a dataset's path is about to leave it: a refresh is about to swap
 * another version in (publish.ts, through stage-dataset.ts), or prune to move it away
 * (prune.ts). Put up before the leases are read for the last time, taken down once the tree
 * has moved (or stayed).
 *
 *   <meta>/removals/<dir>/<label>.<pid>.<random>
 *
 * Why: a job reusing a dataset takes no lock, only a lease (usage.ts), then reads the version
 * at the path again (agent/leases.ts). A refresh or prune that read the leases just before
 * that lease was written, and renamed just after that re-read, replaced or removed the tree
 * under the job (the race left open in session 18's note). Both sides now write first and
 * read second, so at least one of them sees the other:
 *   - the remover puts up its notice, then reads the leases: a lease there (or leases it
 *     cannot read), it keeps the tree;
 *   - a job writes its lease, then reads the notices: one up (or notices it cannot read: an
 *     error), it waits until it is down (the tree has moved or stayed), and only then reads
 *     the version at the path again.
 *
 * A notice is refreshed every NOTICE_REFRESH_MS while it is up, by a write (stamped with the
 * server's time on NFS, where a utimes carries the client's). It is over at once when its
 * process is gone (same label: host, PID namespace and boot), and otherwise when it was not
 * refreshed for REMOVAL_NOTICE_STALE_MS: on the storage's clock (against the mtime of a file
 * the job has just written: NFS clients' clocks differ), or seen unchanged that long by the
 * job's own clock (filesystems whose mtimes come from their clients' clocks). So a remover
 * that died with its notice up holds jobs back about a minute at most.
 *
 * The remover, for its part, moves nothing unless its last refresh landed within
 * NOTICE_HONOURED_MS (honoured()): a remover whose storage answered slowly, or whose event
 * loop was held up, for long enough that jobs may have taken its notice for over, looks at
 * the leases again first (publish.ts) or keeps the dataset (prune.ts) (review, 2026-12-05).
 *
 * On NFS a directory's absence is cached by clients (lookupcache), so the first notice or
 * lease of a dataset could be missed by a reader that looked before it existed: readers
 * that must not miss one (a job waiting; a remover's last look at the leases) make the
 * directory first (mkdir goes to the server, and drops a cached absence).
 */
import { constants } from "node:fs";
import { type FileHandle, open, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { storageError } from "./attempt.ts";
import { newHolderPath, readHolderFiles, writeHolderFile } from "./holder-files.ts";
import type { DatasetLocation } from "./layout.ts";
import { makeSharedDir } from "./shared-dirs.ts";
import type { StorageCall } from "./storage-call.ts";

/** Not refreshed for this long: a remover that is gone. */
export const REMOVAL_NOTICE_STALE_MS = 60_000;
export const NOTICE_REFRESH_MS = 5_000;
/** A remover moves a tree only if its last refresh landed this recently (half the above). */
export const NOTICE_HONOURED_MS = 30_000;
/** Another process's notice this old is removed by whoever reads it (none is refreshed). */
const NOTICE_FORGOTTEN_MS = 60 * 60_000;
/** A waiting job's looks: soon at first (a swap takes milliseconds), then less often. */
const FIRST_POLL_MS = 20;
const LAST_POLL_MS = 500;

/** `<label>.<pid>.<16 hex>` (host-label.ts: the label has no dots). */
const NOTICE_NAME = /^[A-Za-z0-9_-]+\.\d+\.[0-9a-f]{16}$/;

function noticeDir(location: DatasetLocation): string {
  return join(location.metaDir, "removals", basename(location.path));
}

export interface RemovalNotice {
  /** Takes the notice down; idempotent, never throws (a notice left up goes stale). */
  withdraw(): Promise<void>;
  /**
   * Stops refreshing it but leaves it up: a rename given up on may still land (it goes
   * stale within REMOVAL_NOTICE_STALE_MS).
   */
  abandon(): void;
  /** Its last refresh (or its posting) landed within NOTICE_HONOURED_MS: jobs still wait. */
  honoured(): boolean;
  /**
   * Now on the storage's clock, at most: the notice's mtime as posted (the server's time on
   * NFS) plus the time since (this process's monotonic clock). Leases are judged by it
   * (usage.ts activeLeases): they are stamped by the storage too.
   */
  storageNow(): number;
}

export async function postRemovalNotice(
  location: DatasetLocation,
  refreshMs = NOTICE_REFRESH_MS,
): Promise<RemovalNotice> {
  const path = await newHolderPath(noticeDir(location), 8);
  // Its time on the storage is at least this (a write's time is set between its start and
  // its answer): taken before, so that a slow answer counts against it.
  let landed = performance.now();
  /**
   * Once the notice's time may have stood still for NOTICE_HONOURED_MS, jobs may have taken
   * it for over, whatever lands afterwards: never honoured again (review: a hang, then
   * rewrites landing in a row, made it look fresh).
   */
  let broken = false;
  const landing = (started: number) => {
    if (performance.now() - landed >= NOTICE_HONOURED_MS) broken = true;
    landed = started;
  };
  const posted = landed;
  await writeHolderFile(path);
  // Readable by every user, whatever the umask (writeHolderFile makes it 0644 through its
  // handle): other users' jobs open it for its mtime as the storage has it (freshMtime); one
  // they may not open is judged by a stat, which on NFS may answer from the client's cache, a
  // minute old (review, 2026-12-06: umask 077 made 0600 notices).
  let postedMtimeMs: number;
  try {
    postedMtimeMs = (await stat(path)).mtimeMs;
  } catch (error) {
    await rm(path, { force: true }).catch(() => {});
    throw error;
  }
  // Taken after the stat answered: the storage's clock was at least the mtime by then.
  const statAnswered = performance.now();
  landing(posted);
  let refreshing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    refreshing = refreshing
      .then(async () => {
        const started = performance.now();
        await rewrite(path);
        landing(started);
      })
      .catch(() => {});
  }, refreshMs);
  timer.unref();
  let withdrawn: Promise<void> | undefined;
  return {
    withdraw: () => {
      clearInterval(timer);
      // After a rewrite in flight: removed while open, on NFS it would linger as a `.nfs…`
      // file until closed (review). The caller bounds the wait.
      withdrawn ??= refreshing.then(() => rm(path, { force: true })).catch(() => {});
      return withdrawn;
    },
    abandon: () => clearInterval(timer),
    storageNow: () => postedMtimeMs + (performance.now() - statAnswered),
    honoured: () => {
      if (performance.now() - landed >= NOTICE_HONOURED_MS) broken = true;
      return !broken && withdrawn === undefined;
    },
  };
}

/**
 * Writes the notice again in place: its mtime is then the server's on NFS (a utimes sets the
 * client's). Never creates it: one taken down stays down.
 */
async function rewrite(path: string): Promise<void> {
  // Never through a link a teammate put in its place (no-follow.ts), nor into a FIFO.
  const file = await open(path, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    await file.write(new Date().toISOString(), 0);
  } finally {
    await file.close();
  }
}

/**
 * Posts a notice through `call` (a bound); one whose call was given up on but that lands
 * later is taken down then (review: left up, it held every job back for a minute).
 */
export async function postRemovalNoticeWithin(
  call: StorageCall,
  location: DatasetLocation,
): Promise<RemovalNotice> {
  let posting: Promise<RemovalNotice> | undefined;
  try {
    return await call(`posting a removal notice for ${location.path}`, () => {
      posting = postRemovalNotice(location);
      return posting;
    });
  } catch (error) {
    posting?.then((late) => late.withdraw()).catch(() => {});
    // The storage's own errors as such (a full one is NO_SPACE, which staging falls back
    // on), not INTERNAL.
    throw storageError(error, noticeDir(location));
  }
}

/** Each notice seen up: its mtime then, and since when it has had it (this process's clock). */
export type NoticesSeen = Map<string, { readonly mtimeMs: number; readonly since: number }>;

/**
 * The notices up on the dataset ("host pid N"), judged at `storageNow` (a time on the
 * storage's clock). A notice of this label whose process is gone is removed on the way; so is
 * any other not refreshed for an hour. Notices that cannot be read are an error, never
 * "none" (review). `seen` (kept across looks) tells a notice left unchanged for
 * REMOVAL_NOTICE_STALE_MS by this process's clock too.
 */
export async function liveRemovalNotices(
  location: DatasetLocation,
  storageNow: number,
  seen: NoticesSeen = new Map(),
): Promise<string[]> {
  const live: string[] = [];
  const now = performance.now();
  for (const file of await readHolderFiles(noticeDir(location))) {
    // Only notices (an NFS client's `.nfs…` file of one removed while open is not one).
    if (!NOTICE_NAME.test(file.name)) continue;
    if (file.goneHere) {
      await rm(file.path, { force: true }).catch(() => {});
      continue;
    }
    let mtimeMs: number;
    try {
      mtimeMs = await freshMtime(file.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    const age = storageNow - mtimeMs;
    if (age >= NOTICE_FORGOTTEN_MS) await rm(file.path, { force: true }).catch(() => {});
    const before = seen.get(file.name);
    const since = before !== undefined && before.mtimeMs === mtimeMs ? before.since : now;
    seen.set(file.name, { mtimeMs, since });
    if (age < REMOVAL_NOTICE_STALE_MS && now - since < REMOVAL_NOTICE_STALE_MS) {
      live.push(file.holder);
    }
  }
  return live;
}

/**
 * The file's mtime as the storage has it now: opened first, since on NFS an open
 * revalidates the attributes that a stat may take from the client's cache (up to a minute).
 */
async function freshMtime(path: string): Promise<number> {
  let file: FileHandle;
  try {
    file = await open(path, "r");
  } catch (error) {
    // Another user's notice this one may not read: its time as the cache has it.
    if ((error as NodeJS.ErrnoException).code === "EACCES") return (await stat(path)).mtimeMs;
    throw error;
  }
  try {
    return (await file.stat()).mtimeMs;
  } finally {
    await file.close();
  }
}

export interface AwaitRemovalsOptions {
  /** The mtime of a file just written on the same storage (the job's lease): its clock's now. */
  readonly storageNow: number;
  readonly signal?: AbortSignal | undefined;
  /** Called after each look that answered (the clock of stage/storage-calls.ts). */
  readonly progressed?: (() => void) | undefined;
  /** Called once, when a notice is first found up. */
  readonly onWaiting?: ((holders: readonly string[]) => void) | undefined;
}

/**
 * Returns once no notice is up on the dataset (each is down or over within
 * REMOVAL_NOTICE_STALE_MS); the holders waited for, if any.
 */
export async function awaitRemovalNotices(
  location: DatasetLocation,
  options: AwaitRemovalsOptions,
): Promise<string[]> {
  const started = performance.now();
  const waitedFor = new Set<string>();
  const seen: NoticesSeen = new Map();
  // Made if missing: a cached absence of the directory (NFS) would hide a notice just posted.
  // Best effort: where it cannot be made, the read below says what is wrong.
  await makeSharedDir(noticeDir(location)).catch(() => {});
  let pollMs = FIRST_POLL_MS;
  for (;;) {
    const live = await liveRemovalNotices(
      location,
      options.storageNow + (performance.now() - started),
      seen,
    );
    options.progressed?.();
    if (live.length === 0) return [...waitedFor];
    if (waitedFor.size === 0) options.onWaiting?.(live);
    for (const holder of live) waitedFor.add(holder);
    await sleep(pollMs, undefined, { signal: options.signal });
    pollMs = Math.min(LAST_POLL_MS, pollMs * 2);
  }
}
