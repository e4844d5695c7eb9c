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
 * A notice is refreshed every NOTICE_REFRESH_MS while it is up. It is over at once when its
 * process is gone (same label: host, PID namespace and boot), and otherwise when it was not
 * refreshed for REMOVAL_NOTICE_STALE_MS, on the storage's clock (against the mtime of a file
 * the job has just written: NFS clients' clocks differ); a job waits for one notice at most
 * that long by its own clock too (a storage whose clock runs ahead of its mtimes). So a
 * remover that died with its notice up holds jobs back a minute at most. Only a remover
 * whose storage left one of its calls unanswered for over a minute during its swap can still
 * move a tree under a job that found its notice over (review, 2026-12-05).
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { isProcessAlive } from "./cleanup.ts";
import { hostLabel } from "./host-label.ts";
import type { DatasetLocation } from "./layout.ts";
import type { StorageCall } from "./storage-call.ts";

/** Not refreshed for this long: a remover that is gone. */
export const REMOVAL_NOTICE_STALE_MS = 60_000;
export const NOTICE_REFRESH_MS = 5_000;
/** Another process's notice this old is removed by whoever reads it (none is refreshed). */
const NOTICE_FORGOTTEN_MS = 60 * 60_000;
const POLL_MS = 20;

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
}

export async function postRemovalNotice(
  location: DatasetLocation,
  refreshMs = NOTICE_REFRESH_MS,
): Promise<RemovalNotice> {
  const dir = noticeDir(location);
  const path = join(dir, `${hostLabel()}.${process.pid}.${randomBytes(8).toString("hex")}`);
  await mkdir(dir, { recursive: true });
  try {
    await writeFile(path, new Date().toISOString());
  } catch (error) {
    await rm(path, { force: true }).catch(() => {});
    throw error;
  }
  let refreshing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    refreshing = refreshing.then(() => utimes(path, new Date(), new Date())).catch(() => {});
  }, refreshMs);
  timer.unref();
  let withdrawn: Promise<void> | undefined;
  return {
    withdraw: () => {
      clearInterval(timer);
      withdrawn ??= rm(path, { force: true }).catch(() => {});
      return withdrawn;
    },
    abandon: () => clearInterval(timer),
  };
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
    throw error;
  }
}

/** A notice seen up, and since when (this process's clock, ms). */
export type NoticesSeen = Map<string, number>;

/**
 * The notices up on the dataset ("host pid N"), judged at `storageNow` (a time on the
 * storage's clock). A notice of this label whose process is gone is removed on the way; so is
 * any other not refreshed for an hour. Notices that cannot be read are an error, never
 * "none" (review). `seen` (kept across looks) bounds the wait for each by this process's
 * clock too.
 */
export async function liveRemovalNotices(
  location: DatasetLocation,
  storageNow: number,
  seen: NoticesSeen = new Map(),
): Promise<string[]> {
  const dir = noticeDir(location);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const thisHost = hostLabel();
  const live: string[] = [];
  const now = performance.now();
  for (const name of names) {
    const [host = "", pidText = ""] = name.split(".");
    const pid = Number(pidText);
    const path = join(dir, name);
    if (host === thisHost && Number.isInteger(pid) && !isProcessAlive(pid)) {
      await rm(path, { force: true }).catch(() => {});
      continue;
    }
    let age: number;
    try {
      age = storageNow - (await stat(path)).mtimeMs;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    if (age >= NOTICE_FORGOTTEN_MS) await rm(path, { force: true }).catch(() => {});
    const firstSeen = seen.get(name) ?? now;
    seen.set(name, firstSeen);
    if (age < REMOVAL_NOTICE_STALE_MS && now - firstSeen < REMOVAL_NOTICE_STALE_MS) {
      live.push(`${host} pid ${pidText}`);
    }
  }
  return live;
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
    await sleep(POLL_MS, undefined, { signal: options.signal });
  }
}
