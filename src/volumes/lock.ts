/**
 * One download per dataset across processes and machines sharing a filesystem (SPEC §3).
 * A `proper-lockfile` lock (an atomic mkdir whose mtime the holder refreshes) per final
 * path; a holder that dies stops refreshing, its lock goes stale and is taken over. The
 * lock only saves bandwidth: correctness comes from atomic publish (publish.ts), so a lost
 * or compromised lock costs a second download, never a corrupt dataset.
 *
 * Stale bound: NFS clients cache attributes for up to 60 s (actimeo) and a holder's refresh
 * may come late, so the library default of 10 s would let a live holder's lock be taken
 * over; we default to 120 s with a refresh every 15 s.
 *
 * Staleness is judged by the waiter's own monotonic clock, never by comparing the lock's
 * mtime (written by the holder's clock) with the waiter's wall clock (review, 2026-12-05:
 * with workers on machines whose clocks differ, a holder 10 minutes behind wrote mtimes that
 * looked 10 minutes old, and waiters took its live lock over at once: the same dataset
 * downloaded again and again; a holder ahead kept its dead lock "fresh" for the skew on top
 * of the bound). The rule (`acquireLock`):
 * - a lock whose mtime changes at all, forwards, backwards or into the future, is alive;
 * - it is stale once its mtime (and inode) stayed the same, as this waiter saw it, for
 *   DSFETCH_LOCK_STALE of this waiter's `performance.now()`;
 * - except that a lock whose mtime is already older than the bound by this waiter's wall
 *   clock (a holder dead long ago, taken over at once before this rule; or a live holder
 *   whose clock is behind) need only stay the same for the confirmation window, `confirmMs`:
 *   max(2 refreshes + 1 s, half the bound), at most the bound (60 s at the default 120 s,
 *   3.5 s at the 5 s minimum): a live holder refreshes twice in it however far its clock is
 *   off, and the half bound covers NFS's directory attribute cache (acdirmin 30 s, up to
 *   acdirmax 60 s: a waiter may see a refreshed mtime only that late);
 * - a holder of this host whose process is gone is taken over once it missed a refresh (its
 *   clock is ours, so the mtime's age is true).
 * The library itself never judges a lock stale (`libraryFs`). A waiter that judged one stale
 * takes it over itself, through a claim (`takeOver`): one mkdir that only one waiter wins per
 * judged lock, then the removal of that very lock; whoever makes the lock afresh (mkdir, atomic)
 * holds it. Why: the library's own takeover is a look, then a removal: 16 waiters that judged a
 * dead holder's lock stale at once removed each other's fresh locks, and two to several of them
 * downloaded the dataset (found in review, 2026-12-06; reproduced with 16 processes: two
 * downloads every time).
 */

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import lockfile from "proper-lockfile";
import type { LockTiming } from "../config/tuning.ts";
import { DsfetchError } from "../errors.ts";
import { storageError } from "./attempt.ts";
import { isProcessAlive } from "./cleanup.ts";
import { hostLabel } from "./host-label.ts";
import { writeNewFile } from "./no-follow.ts";
import { makeSharedDir, retryWhereReplaced } from "./shared-dirs.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { waitForChange } from "./wait-for-change.ts";

export interface Holder {
  readonly host: string;
  readonly pid: number;
  readonly since: string;
  /** Host label (host name, PID namespace, boot): where it is a waiter's, `pid` can be looked up. */
  readonly label?: string | undefined;
  /**
   * The inode of the lock directory it made: a holder file beside another lock (its writer's
   * write failed, or a takeover's removal of it) names that lock's holder, not this one's.
   */
  readonly lockIno?: number | undefined;
}

export interface HeldLock {
  /** Who holds it (this process), as waiters see it. */
  readonly holder: Holder;
  /** False once the lock was found taken over (we then rely on atomic publish alone). */
  readonly intact: () => boolean;
  /**
   * Whether the lock still looks ours now: intact, and its holder file still names this
   * holder. A waiter that takes a lock over writes its own holder file at once, and removes
   * it when done; the refresh that finds the lock taken (`intact`) may come up to a refresh
   * interval later, e.g. right after this process was frozen. False when the file cannot be
   * read: the caller then checks with the store (stage-dataset.ts), never a wrong answer.
   */
  stillHeld(): Promise<boolean>;
  release(): Promise<void>;
}

export interface WaitReport {
  readonly holder: Holder | undefined;
  readonly waitedMs: number;
  /**
   * Milliseconds since this waiter last saw the lock's mtime change (or, before it saw a
   * change, since it first looked at it): how long the holder has not refreshed it as far as
   * this waiter knows, by its monotonic clock (the mtime's own age means nothing under clock
   * skew). Undefined when the lock could not be looked at.
   */
  readonly heartbeatAgeMs: number | undefined;
}

export type LockOutcome =
  | { readonly kind: "acquired"; readonly lock: HeldLock }
  | { readonly kind: "done" };

export interface AcquireOptions {
  readonly timing: LockTiming;
  readonly signal?: AbortSignal | undefined;
  /** Called after each poll while another process holds the lock. */
  readonly onWait?: (report: WaitReport) => void;
  /** Checked while waiting: true when the holder has published, so waiting can stop. */
  readonly isDone?: (signal: AbortSignal, progressed: () => void) => Promise<boolean>;
  readonly onCompromised?: (error: Error) => void;
  /**
   * Bounds each call on the storage (stage/storage-calls.ts). Why: a waiter whose storage
   * hung while it waited never came back from its poll, so the wait's own bound was never
   * looked at again, and it waited, silent, for as long as the storage was gone.
   */
  readonly call?: StorageCall | undefined;
  /**
   * false: no holder file is written (waiters then say "another process"): prune on storage
   * with no inode to spare, where the holder file took the one its removal notice needed
   * (review, 2026-12-07).
   */
  readonly holderFile?: boolean | undefined;
}

const holderPath = (lockPath: string) => `${lockPath}.holder.json`;

/**
 * An mtime this early was set by a waiter of dsfetch before 2026-12-06, which aged a lock to
 * the epoch for the library to take over (storage of 1 s precision rounds it).
 */
const AGED_BEFORE_MS = 1_000;
/** A claim's mkdir failing so never succeeds, however long one waits (`takeOver`). */
const NO_ROOM_FOR_A_CLAIM = new Set(["ENOSPC", "EDQUOT", "ENAMETOOLONG", "EMLINK"]);
/** Claims on one judged lock, one per level (`takeOver`): more means claimers keep dying. */
const MAX_CLAIM_LEVELS = 16;

/** What one look at the lock saw: its inode and mtime, as this waiter's storage shows them. */
interface Look {
  readonly ino: number;
  readonly mtimeMs: number;
}

/** The lock as this waiter has watched it: the same look since `since` (performance.now()). */
interface Watched extends Look {
  readonly since: number;
  /** How many looks in a row saw it so. */
  readonly looks: number;
}

/** Takes the lock at `lockPath`, waiting for another holder as long as the timing allows. */
export async function acquireLock(
  lockPath: string,
  dataset: string,
  options: AcquireOptions,
): Promise<LockOutcome> {
  const { timing } = options;
  const call = options.call ?? unboundedCall;
  const staleMs = Math.max(5_000, timing.staleMs);
  const confirmationMs = confirmMs(timing.staleMs);
  try {
    await call(`creating ${dirname(lockPath)}`, () => makeSharedDir(dirname(lockPath)));
  } catch (error) {
    throw storageError(error, dirname(lockPath));
  }
  // Monotonic: the wall clock may be stepped (NTP) while we wait.
  const started = performance.now();
  let watched: Watched | undefined;
  /** The lock as it was at the first look past the wait's bound. */
  let atBound: { readonly look: Look | undefined } | undefined;
  /** The lock was found gone at the last look (released): tried again at once, not twice. */
  let foundGone = false;
  /** Other waiters' claims (`takeOver`) as this waiter has watched them. */
  const claims: WatchedClaims = new Map();
  for (;;) {
    let intact = true;
    let givenUp = false;
    let takenLate: (() => Promise<void>) | undefined;
    const library = libraryFs();
    try {
      const release = await call(`taking the lock ${lockPath}`, () => {
        // The first lock made in a new locks directory (shared-dirs.ts makeDirInPlace).
        const taking = retryWhereReplaced(dirname(lockPath), () =>
          lockfile.lock(lockPath, {
            lockfilePath: lockPath,
            realpath: false,
            // The holder's side: refreshed every `update`, and given up (onCompromised) when
            // its refreshes failed for this long by its own clock. Never the waiter's judgement
            // of another's lock (libraryFs).
            stale: staleMs,
            update: updateMs(timing.staleMs),
            retries: 0,
            fs: library.fs,
            onCompromised: (error: Error) => {
              intact = false;
              options.onCompromised?.(error);
            },
          }),
        );
        // Taken after all once given up on (the storage came back): let go of it at once, or
        // its refreshes would keep it for as long as this process lives.
        taking.then(
          (release) => {
            if (givenUp) release().catch(() => {});
            else takenLate = release;
          },
          () => {},
        );
        return taking;
      });
      const holder: Holder = {
        host: hostname(),
        pid: process.pid,
        since: new Date().toISOString(),
        label: hostLabel(),
        lockIno: library.ino(),
      };
      if (options.holderFile !== false) {
        await call(`writing ${holderPath(lockPath)}`, () => writeHolder(lockPath, holder)).catch(
          () => {},
        );
      }
      await call(`removing old claims beside ${lockPath}`, () => removeOldClaims(lockPath)).catch(
        () => {},
      );
      return {
        kind: "acquired",
        lock: {
          holder,
          intact: () => intact,
          stillHeld: async () => {
            if (!intact) return false;
            return namesHolder(await readHolder(lockPath), holder);
          },
          release: async () => {
            // Not once the lock was taken over: the new holder wrote its own, and without it
            // its waiters saw "another process" and never took over from it once it died on
            // their host (review, 2026-12-06). Nor once the lock there is another's: a refresh
            // notices a takeover up to a refresh interval late. Told by the lock directory
            // itself (a takeover removes the holder file before the lock), not by reading the
            // holder file: a read that hangs held the release.
            if (intact && (await library.isStillOurs(lockPath))) {
              await rm(holderPath(lockPath), { force: true }).catch(() => {});
            }
            // The lock itself only if it is still the one this process made (libraryFs).
            await release().catch(() => {});
            library.close();
          },
        },
      };
    } catch (error) {
      givenUp = true;
      // Taken just as the call was given up on (found in review: never released then).
      takenLate?.().catch(() => {});
      if ((error as NodeJS.ErrnoException).code !== "ELOCKED") throw storageError(error, lockPath);
    }
    const { isDone } = options;
    if (isDone !== undefined && (await call(`looking for ${lockPath}'s dataset`, isDone))) {
      return { kind: "done" };
    }
    const named = await call(`reading ${holderPath(lockPath)}`, () => readHolder(lockPath));
    const look = await call(`looking at ${lockPath}`, () => lookAt(lockPath));
    // Another lock's holder file (a dead holder's, left when the new holder's write failed)
    // is not this lock's holder: by it, a live holder's lock was taken for a dead process's
    // of this host (review, 2026-12-06).
    const holder =
      named?.lockIno === undefined ||
      (look !== "gone" && look !== undefined && look.ino === named.lockIno)
        ? named
        : undefined;
    const now = performance.now();
    const waitedMs = now - started;
    if (look === "gone") {
      // Released between our try and our look: try again at once, whatever the wait's bound
      // (once: a storage that keeps answering so must not make us spin).
      watched = undefined;
      if (!foundGone) {
        foundGone = true;
        continue;
      }
    }
    foundGone = look === "gone";
    const seen: Watched | undefined =
      look === "gone" || look === undefined
        ? undefined
        : watched !== undefined && sameLook(watched, look)
          ? { ...watched, looks: watched.looks + 1 }
          : { ...look, since: now, looks: 1 };
    watched = seen;
    const heartbeatAgeMs = seen === undefined ? undefined : now - seen.since;
    // By the waiter's wall clock, so only a hint: a holder dead long ago, or one whose clock
    // is behind ours; told apart by watching the mtime for the confirmation window.
    const looksOld = seen !== undefined && Date.now() - seen.mtimeMs > staleMs;
    if (
      seen !== undefined &&
      now - seen.since >= (looksOld ? confirmationMs : staleMs) &&
      takenOver(
        await call(`taking over ${lockPath} (not refreshed)`, () =>
          takeOver(lockPath, seen, claims, confirmationMs),
        ),
        lockPath,
        dataset,
        holder,
        now - seen.since,
      )
    ) {
      continue;
    }
    // A holder of this host (and PID namespace) whose process is gone: its lock is over, not
    // in DSFETCH_LOCK_STALE (120 s) but once it missed a refresh (review, 2026-12-05: waiters
    // waited the whole bound, "waiting for <host> pid N" about a dead process). Its mtime was
    // written by this host's clock, so its age is true here. A lock refreshed within the
    // interval is left alone: it may be a new holder's whose holder file is not written yet;
    // so is one seen at a single look (a new holder of another host, whose clock may be
    // behind, could have made it just now: its holder file is there by our next look).
    if (
      holder?.label === hostLabel() &&
      holder.pid !== process.pid &&
      !isProcessAlive(holder.pid) &&
      seen !== undefined &&
      seen.looks >= 2 &&
      Date.now() - seen.mtimeMs > updateMs(timing.staleMs) + 1_000 &&
      takenOver(
        await call(`taking over ${lockPath} (its holder is gone)`, () =>
          takeOver(lockPath, seen, claims, confirmationMs),
        ),
        lockPath,
        dataset,
        holder,
        now - seen.since,
      )
    ) {
      continue;
    }
    // The wait's bound does not cut short the confirmation of the lock as it was when the
    // bound was reached (it ends within `confirmationMs`; once the mtime changes, it is a
    // live holder's): else `prune` (no wait at all) could never take over, nor remove the
    // dataset of, a lock its holder left long ago.
    if (waitedMs >= timing.waitMs) atBound ??= { look: seen };
    // Bounded too: the confirmation, then as long again for another waiter's claim to be
    // passed over. A takeover that keeps failing (storage that refuses the removal) made
    // `prune` and the waiters past their bound look at the dead lock for good (review,
    // 2026-12-06).
    const confirming =
      looksOld &&
      seen !== undefined &&
      atBound?.look !== undefined &&
      sameLook(atBound.look, seen) &&
      waitedMs < timing.waitMs + 2 * confirmationMs + 2 * Math.max(1_000, timing.pollMs);
    if (waitedMs >= timing.waitMs && !confirming) {
      throw new DsfetchError(
        "LOCK_TIMEOUT",
        `${dataset}: gave up after waiting ${Math.round(waitedMs / 1000)} s for ${describeHolder(holder)} to finish downloading it`,
        {
          dataset,
          hint:
            heartbeatAgeMs !== undefined && heartbeatAgeMs > 2 * updateMs(timing.staleMs)
              ? `the holder has not refreshed its lock for ${Math.round(heartbeatAgeMs / 1000)} s (stopped, or its storage hangs); it is taken over once that reaches DSFETCH_LOCK_STALE (${Math.round(timing.staleMs / 1000)} s): raise DSFETCH_LOCK_WAIT above it`
              : `the holder is still refreshing its lock; raise DSFETCH_LOCK_WAIT, or stop that process (its lock goes stale ${Math.round(timing.staleMs / 1000)} s after it dies)`,
        },
      );
    }
    options.onWait?.({ holder, waitedMs, heartbeatAgeMs });
    // The holder removes its lock when done: on this machine that wakes us at once.
    await waitForChange(dirname(lockPath), timing.pollMs, options.signal);
  }
}

/**
 * Whether someone holds the lock now, without taking it: what `prune --dry-run` reports, as
 * the real prune would find it (review, 2026-12-05). One look cannot see whether the mtime
 * changes, so this answers what a waiter starting now would do without watching it for the
 * whole bound: not held when there is no lock, when a waiter set its mtime to the epoch (it
 * is being taken over), or when its mtime is older than the bound by this machine's clock
 * (a waiter takes it over once it stayed so for the confirmation window: a holder dead long
 * ago, the usual case; a live holder whose clock is that far behind ours keeps its lock from
 * the real prune, which watches, but is reported not held here). Held otherwise, a future
 * mtime included. Storage that cannot tell counts as held.
 */
export async function lockHeld(lockPath: string, staleMs: number): Promise<boolean> {
  const look = await lookAt(lockPath);
  if (look === "gone") return false;
  if (look === undefined) return true;
  return look.mtimeMs >= AGED_BEFORE_MS && Date.now() - look.mtimeMs <= Math.max(5_000, staleMs);
}

/** How often a holder refreshes its lock's mtime. */
function updateMs(staleMs: number): number {
  return Math.max(1_000, Math.min(15_000, Math.floor(staleMs / 4)));
}

/**
 * How long a lock whose mtime is older than the stale bound by the waiter's wall clock must
 * stay unchanged before it is taken over (the rule: top of this file): two refreshes and a
 * second, or half the bound (NFS attribute caches) if longer, at most the bound.
 */
function confirmMs(staleMs: number): number {
  const stale = Math.max(5_000, staleMs);
  return Math.min(stale, Math.max(2 * updateMs(staleMs) + 1_000, Math.floor(stale / 2)));
}

/**
 * The `fs` proper-lockfile is given. The library judges a lock stale when its mtime is older
 * than `stale` by the caller's wall clock (wrong under clock skew), and takes it over by a
 * look then a removal (several waiters at once each end up holding it): top of this file.
 * Until this call has made the lock directory, its look at an existing lock answers "held",
 * whatever the mtime; once the lock is ours, its looks are the real ones, so that the
 * holder's refresh and its check that the mtime is still the one it wrote (else
 * onCompromised) work as they are.
 */
function libraryFs() {
  let ours = false;
  /** The inode of the lock this call made. */
  let made: number | undefined;
  /**
   * The last mtimes this process gave the lock (asked for, and read back as kept), a
   * refresh in flight included: a release that looks while a refresh lands sees the new one
   * (review, 2026-12-06: compared with the last kept one only, the lock was left behind).
   */
  const ownMtimes: number[] = [];
  const remember = (mtimeMs: number) => {
    ownMtimes.push(mtimeMs);
    if (ownMtimes.length > 6) ownMtimes.shift();
  };
  /** Kept as given, within the storage's rounding, or cut to the second (whole seconds kept). */
  const oneOfOurs = (mtimeMs: number) =>
    ownMtimes.some(
      (own) => Math.abs(mtimeMs - own) < 1 || mtimeMs === Math.floor(own / 1000) * 1000,
    );
  /**
   * Whether the lock at `path` is still the one this call made: its inode, and an mtime this
   * process gave it (an inode number is reused at once when a taker removes the lock and
   * makes it again; its new lock's mtime is not ours).
   */
  const stillOurs = (stats: fs.Stats | undefined) =>
    made === undefined || (stats !== undefined && stats.ino === made && oneOfOurs(stats.mtimeMs));
  /**
   * Removes the lock only if it is still the one this call made: one taken over since (a
   * takeover is noticed up to a refresh interval late) is another holder's, and removing it
   * let its waiters take it again: a third download (review, 2026-12-06).
   */
  const rmdirOurs = (path: string, callback: (error: NodeJS.ErrnoException | null) => void) => {
    fs.stat(path, (error, stats) => {
      closeOpened();
      if (error !== null) callback(error);
      else if (!stillOurs(stats)) callback(null);
      else fs.rmdir(path, callback);
    });
  };
  const rmdirOursSync = (path: string) => {
    closeOpened();
    if (stillOurs(fs.statSync(path, { throwIfNoEntry: false }))) fs.rmdirSync(path);
  };
  /**
   * The lock directory this call made, kept open: its refreshes set the times of that very
   * directory (futimes), never of whatever is at the path by then. A refresh sent by name
   * just before an outage longer than the stale bound landed, after it, on the next holder's
   * lock, which then took itself for taken over (found in review, 2026-12-06).
   */
  let opened: number | undefined;
  const closeOpened = () => {
    const fd = opened;
    opened = undefined;
    if (fd !== undefined) fs.close(fd, () => {});
  };
  return {
    ino: () => made,
    /** Whether the lock at `path` is still the one this call made (false when unreadable). */
    /** Lets go of the lock directory kept open (a lock the library no longer holds). */
    close: closeOpened,
    isStillOurs: (path: string) =>
      new Promise<boolean>((resolve) => {
        fs.stat(path, (error, stats) => resolve(error === null && stillOurs(stats)));
      }),
    fs: {
      mkdir: (path: string, callback: (error: NodeJS.ErrnoException | null) => void) =>
        fs.mkdir(path, (error) => {
          if (error !== null) {
            callback(error);
            return;
          }
          ours = true;
          const record = (statError: NodeJS.ErrnoException | null, stats: fs.Stats) => {
            if (statError === null) {
              made = stats.ino;
              remember(stats.mtimeMs);
            }
            callback(null);
          };
          fs.open(path, "r", (openError, fd) => {
            if (openError !== null) fs.stat(path, record);
            else {
              opened = fd;
              fs.fstat(fd, record);
            }
          });
        }),
      stat: (
        path: string,
        callback: (error: NodeJS.ErrnoException | null, stats?: fs.Stats) => void,
      ) =>
        fs.stat(path, (error, stats) => {
          if (error !== null || ours) callback(error, stats);
          else {
            callback(
              Object.assign(new Error("Lock file is already being held"), {
                code: "ELOCKED",
                file: path,
              }),
            );
          }
        }),
      utimes: (
        path: string,
        atime: Date,
        mtime: Date,
        callback: (error: NodeJS.ErrnoException | null) => void,
      ) => {
        if (ours) remember(mtime.getTime());
        const fd = opened;
        const done = (error: NodeJS.ErrnoException | null) => {
          if (error !== null || !ours) {
            callback(error);
            return;
          }
          // The mtime the storage kept, read back: one of whole seconds keeps less than was
          // given (the library's precision probe gives milliseconds), and a release compared
          // with the given one left the lock behind (found in review, 2026-12-06).
          const readBack = (statError: NodeJS.ErrnoException | null, stats: fs.Stats) => {
            if (statError === null) remember(stats.mtimeMs);
            callback(null);
          };
          if (fd === undefined) fs.stat(path, readBack);
          else fs.fstat(fd, readBack);
        };
        if (fd === undefined) fs.utimes(path, atime, mtime, done);
        else fs.futimes(fd, atime, mtime, done);
      },
      rmdir: rmdirOurs,
      rmdirSync: rmdirOursSync,
      realpath: fs.realpath,
    },
  };
}

/** The lock's inode and mtime; "gone" when there is none, undefined when unreadable. */
async function lookAt(lockPath: string): Promise<Look | "gone" | undefined> {
  try {
    const { ino, mtimeMs } = await stat(lockPath);
    return { ino, mtimeMs };
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT" ? "gone" : undefined;
  }
}

/** lookAt through an open directory: on NFS, not an answer from the attribute cache. */
async function lookAtFresh(lockPath: string): Promise<Look | "gone" | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(lockPath, "r");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // A lock this user may not open (another user's, mode 0700) is looked at as before.
    return code === "ENOENT" ? "gone" : code === "EACCES" ? lookAt(lockPath) : undefined;
  }
  try {
    const { ino, mtimeMs } = await handle.stat();
    return { ino, mtimeMs };
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * Removes the locks in `locksDir` that are stale (by this machine's clock, as lockHeld
 * judges) and stay unchanged for the confirmation window, as a waiter takes one over
 * (takeOver: its claim, and its last looks just before the removal), and the holder files
 * left without their lock: what `prune` does on storage with no inode left for its own lock
 * and removal notice. Each such lock holds two inodes. Returns how many locks went.
 *
 * Why: waiters that took a dead holder's lock over used to free those inodes as a side
 * effect; a worker now finds the storage out of inodes before it takes a lock, and stages
 * elsewhere (storage-check.ts inodeShortage), so prune, run to free that storage, failed on
 * every dataset (exploratory tester 2, 2026-12-07). The confirmation window is waited out
 * between storage calls (each bounded by `call`), and an interrupt ends it (review).
 */
export async function removeStaleLocks(
  locksDir: string,
  staleMs: number,
  { signal, call = unboundedCall }: { signal?: AbortSignal; call?: StorageCall } = {},
): Promise<number> {
  const names = await call(`reading ${locksDir}`, () => readdir(locksDir)).catch(
    () => [] as string[],
  );
  const judged = new Map<string, Look>();
  /** Every judged lock is a dead process's of this host: a missed refresh is enough. */
  let deadHereOnly = true;
  for (const name of names) {
    if (!name.endsWith(".lock")) continue;
    const lockPath = join(locksDir, name);
    const look = await call(`looking at the lock ${lockPath}`, async () => {
      if (!(await lockHeld(lockPath, staleMs))) {
        deadHereOnly = false;
        return lookAtFresh(lockPath);
      }
      // A holder of this host whose process is gone, as a waiter judges it (acquireLock):
      // its lock is over once it missed a refresh, not in the stale bound (2 minutes of a
      // prune that could free nothing: exploratory tester, 2026-12-07).
      const holder = await readHolder(lockPath);
      const dead =
        holder?.label === hostLabel() && holder.pid !== process.pid && !isProcessAlive(holder.pid);
      return dead ? lookAtFresh(lockPath) : undefined;
    });
    if (look !== "gone" && look !== undefined) judged.set(lockPath, look);
  }
  const confirmationMs = confirmMs(staleMs);
  if (judged.size > 0) {
    await sleep(deadHereOnly ? updateMs(staleMs) + 1_000 : confirmationMs, undefined, {
      signal,
    });
  }
  let removed = 0;
  for (const [lockPath, look] of judged) {
    signal?.throwIfAborted();
    const gone = await call(`removing the stale lock ${lockPath}`, () =>
      takeOver(lockPath, look, new Map(), confirmationMs),
    );
    if (gone === true) removed++;
  }
  // Holder files whose lock is gone (a holder killed between its lock's removal and its
  // holder file's, or a takeover's): an inode each.
  for (const name of names) {
    if (!name.endsWith(".lock.holder.json")) continue;
    const lockPath = join(locksDir, name.slice(0, -".holder.json".length));
    await call(`removing ${join(locksDir, name)}`, async () => {
      if ((await lookAt(lockPath)) === "gone") await rm(join(locksDir, name), { force: true });
    }).catch(() => {});
  }
  return removed;
}

function sameLook(a: Look, b: Look): boolean {
  return a.ino === b.ino && a.mtimeMs === b.mtimeMs;
}

/** Claims this waiter found made by others: path -> their inode, first seen (performance.now()). */
type WatchedClaims = Map<string, { readonly ino: number; readonly since: number }>;

/**
 * Takes over the lock judged stale as `judged`, if it is still that very lock: claims it
 * first, with a mkdir that one waiter alone wins (`<lock>.takeover-<inode>-<mtime>-<level>`,
 * beside the lock), then looks again and removes it; the claim goes once the lock is gone.
 * A waiter whose claim was refused (another's) goes back to waiting: the lock is gone by its
 * next look, or still the same. A claim that stayed for `confirmationMs` as this waiter saw it
 * (its claimer died between its mkdir and the removal) is passed over by claiming the next
 * level. True when the lock should be tried again at once: removed, gone, or changed since it
 * was judged (then looked at anew).
 */
async function takeOver(
  lockPath: string,
  judged: Look,
  claims: WatchedClaims,
  confirmationMs: number,
): Promise<boolean | "refused"> {
  const now = await lookAt(lockPath);
  if (now === undefined) return false;
  if (now === "gone" || !sameLook(now, judged)) return true;
  const passedOver: string[] = [];
  let claim: string | undefined;
  /**
   * No claim could be made for want of room (no inode left, a quota: ENOSPC, EDQUOT): the
   * takeover goes on without one, as before claims (several waiters may then each take it, a
   * second download at worst). Waiting for a claim there never ended: `prune`, run to free
   * that very storage, and the waiters looked at the dead lock for good (review, 2026-12-06).
   */
  let unclaimed = false;
  for (let level = 1; level <= MAX_CLAIM_LEVELS && claim === undefined && !unclaimed; level++) {
    const path = `${lockPath}.takeover-${judged.ino}-${Math.round(judged.mtimeMs)}-${level}`;
    const made = await mkdir(path).then(
      () => true,
      (error: NodeJS.ErrnoException) => error.code ?? "EIO",
    );
    if (made === true) claim = path;
    else if (made === "EACCES" || made === "EPERM" || made === "EROFS") return "refused";
    // No room for it (or a name too long for this filesystem, a directory full of links):
    // it never comes, however long one waits for it.
    else if (typeof made === "string" && NO_ROOM_FOR_A_CLAIM.has(made)) unclaimed = true;
    // Any other failure (EIO, ESTALE: an outage in the middle of a herd) is tried again at the
    // next poll: without a claim, waiters remove each other's fresh locks.
    else if (made !== "EEXIST") return false;
    else if (!(await abandoned(path, claims, confirmationMs))) return false;
    else passedOver.push(path);
  }
  if (claim === undefined && !unclaimed) return false;
  try {
    // Opened, not only looked at: NFS answers a stat from its attribute cache, an open
    // revalidates (close-to-open).
    const again = await lookAtFresh(lockPath);
    if (again === undefined) return false;
    if (again === "gone" || !sameLook(again, judged)) return true;
    // Its holder file first: left behind, it named the dead holder beside the next lock.
    await rm(holderPath(lockPath), { force: true }).catch(() => {});
    // Looked at once more just before the removal (by name): a claimer held up between its
    // look and its removal for longer than the confirmation window (a frozen VM) is passed
    // over, and the lock there may be a new holder's by then.
    const last = await lookAtFresh(lockPath);
    if (last === undefined) return false;
    if (last === "gone" || !sameLook(last, judged)) return true;
    return await rmdir(lockPath).then(
      () => true,
      (error: NodeJS.ErrnoException) =>
        error.code === "ENOENT" ||
        (error.code === "EACCES" || error.code === "EPERM" ? "refused" : false),
    );
  } finally {
    for (const path of claim === undefined ? passedOver : [claim, ...passedOver]) {
      await rmdir(path).catch(() => {});
    }
  }
}

/**
 * Claims on earlier locks at this path, left by takers that died between their removal of
 * the lock and of their claim (review, 2026-12-06: nothing removed them). None can be on the
 * lock just made: a claim names a lock judged stale, unchanged for the confirmation window.
 */
async function removeOldClaims(lockPath: string): Promise<void> {
  // Exactly these names: another dataset's lock may start so (a dataset "x.lock.takeover-1"
  // beside "x"; found in review, 2026-12-06).
  const prefix = `${basename(lockPath)}.takeover-`;
  const names = await readdir(dirname(lockPath));
  for (const name of names) {
    if (name.startsWith(prefix) && /^\d+-\d+-\d+$/.test(name.slice(prefix.length))) {
      await rmdir(join(dirname(lockPath), name)).catch(() => {});
    }
  }
}

/**
 * Whether another waiter's claim has stayed (the same inode) for `confirmationMs` of this
 * waiter's clock: its claimer would have removed it within a few storage calls.
 */
async function abandoned(
  path: string,
  claims: WatchedClaims,
  confirmationMs: number,
): Promise<boolean> {
  const look = await lookAt(path);
  if (look === "gone" || look === undefined) return false;
  const now = performance.now();
  const watched = claims.get(path);
  if (watched === undefined || watched.ino !== look.ino) {
    claims.set(path, { ino: look.ino, since: now });
    return false;
  }
  return now - watched.since >= confirmationMs;
}

/** A stale lock this user may not take over (takenOver). */
export class StaleLockNotOurs extends DsfetchError {}

/**
 * Whether a takeover (takeOver) went through; a takeover this user may not make is an error:
 * the lock never changes then, and a waiter looked at it forever, past its bound (the wait
 * ends only on a lock that stops looking stale: review, 2026-12-06). Seen where one user's
 * umask made the locks directory (0755) of a storage that several users share.
 */
function takenOver(
  aged: boolean | "refused",
  lockPath: string,
  dataset: string,
  holder: Holder | undefined,
  unchangedMs: number,
): boolean {
  if (aged !== "refused") return aged;
  throw new StaleLockNotOurs(
    "STORAGE",
    `${dataset}: the lock ${lockPath} of ${describeHolder(holder)} is stale (unchanged for ${Math.round(unchangedMs / 1000)} s), and this user may not take it over: it belongs to another user, in a directory this user cannot write (permission denied)`,
    {
      dataset,
      hint: `remove it as its owner or as root (rmdir ${lockPath}); let every user of the storage write ${dirname(lockPath)} (e.g. a shared group and chmod 2775; not 1777: its sticky bit lets no user remove another's stale lock)`,
    },
  );
}

function namesHolder(named: Holder | undefined, holder: Holder): boolean {
  return (
    named !== undefined &&
    named.host === holder.host &&
    named.pid === holder.pid &&
    named.since === holder.since
  );
}

export function describeHolder(holder: Holder | undefined): string {
  return holder === undefined ? "another process" : `${holder.host} pid ${holder.pid}`;
}

/**
 * Written beside and renamed into place: never half-written, and it replaces a dead holder's
 * file even where that one belongs to another user (the directory is writable: the lock is).
 */
async function writeHolder(lockPath: string, holder: Holder): Promise<void> {
  const temporary = `${holderPath(lockPath)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    // 0644 whatever this process's umask: read by every user's waiters (who holds it,
    // whether its process is gone); 077 made it 0600, and other users' waiters knew no holder
    // (review, 2026-12-06). Never through a link a teammate put at its name (no-follow.ts).
    await writeNewFile(temporary, JSON.stringify(holder));
    await rename(temporary, holderPath(lockPath));
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => {});
    throw error;
  }
}

async function readHolder(lockPath: string): Promise<Holder | undefined> {
  try {
    const value = JSON.parse(await readFile(holderPath(lockPath), "utf8")) as Partial<Holder>;
    if (typeof value.host !== "string" || typeof value.pid !== "number") return undefined;
    return {
      host: value.host,
      pid: value.pid,
      since: String(value.since),
      label: typeof value.label === "string" ? value.label : undefined,
      lockIno: typeof value.lockIno === "number" ? value.lockIno : undefined,
    };
  } catch {
    return undefined;
  }
}
