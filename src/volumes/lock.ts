/**
 * One download per dataset across processes and machines sharing a filesystem (SPEC §3).
 * A `proper-lockfile` lock (an atomic mkdir whose mtime the holder refreshes) per final
 * path; a holder that dies stops refreshing, its lock goes stale and is taken over. The
 * lock only saves bandwidth: correctness comes from atomic publish (publish.ts), so a lost
 * or compromised lock costs a second download, never a corrupt dataset.
 *
 * Stale bound: NFS clients cache attributes for up to 60 s (actimeo) and node clocks drift,
 * so the library default of 10 s would let a live holder's lock be taken over; we default
 * to 120 s with a refresh every 15 s.
 */
import { mkdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";
import lockfile from "proper-lockfile";
import type { LockTiming } from "../config/tuning.ts";
import { DsfetchError } from "../errors.ts";
import { storageError } from "./attempt.ts";
import { isProcessAlive } from "./cleanup.ts";
import { hostLabel } from "./host-label.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { waitForChange } from "./wait-for-change.ts";

export interface Holder {
  readonly host: string;
  readonly pid: number;
  readonly since: string;
  /** Host label (host name, PID namespace, boot): where it is a waiter's, `pid` can be looked up. */
  readonly label?: string | undefined;
}

export interface HeldLock {
  /** Who holds it (this process), as waiters see it. */
  readonly holder: Holder;
  /** False once the lock was found taken over (we then rely on atomic publish alone). */
  readonly intact: () => boolean;
  release(): Promise<void>;
}

export interface WaitReport {
  readonly holder: Holder | undefined;
  readonly waitedMs: number;
  /** Milliseconds since the holder last refreshed the lock. */
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
  readonly isDone?: () => Promise<boolean>;
  readonly onCompromised?: (error: Error) => void;
  /**
   * Bounds each call on the storage (stage/storage-calls.ts). Why: a waiter whose storage
   * hung while it waited never came back from its poll, so the wait's own bound was never
   * looked at again, and it waited, silent, for as long as the storage was gone.
   */
  readonly call?: StorageCall | undefined;
}

const holderPath = (lockPath: string) => `${lockPath}.holder.json`;

/** Takes the lock at `lockPath`, waiting for another holder as long as the timing allows. */
export async function acquireLock(
  lockPath: string,
  dataset: string,
  options: AcquireOptions,
): Promise<LockOutcome> {
  const { timing } = options;
  const call = options.call ?? unboundedCall;
  try {
    await call(`creating ${dirname(lockPath)}`, () =>
      mkdir(dirname(lockPath), { recursive: true }),
    );
  } catch (error) {
    throw storageError(error, dirname(lockPath));
  }
  const started = Date.now();
  for (;;) {
    let intact = true;
    let givenUp = false;
    let takenLate: (() => Promise<void>) | undefined;
    try {
      const release = await call(`taking the lock ${lockPath}`, () => {
        const taking = lockfile.lock(lockPath, {
          lockfilePath: lockPath,
          realpath: false,
          stale: Math.max(5_000, timing.staleMs),
          update: updateMs(timing.staleMs),
          retries: 0,
          onCompromised: (error: Error) => {
            intact = false;
            options.onCompromised?.(error);
          },
        });
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
      };
      await call(`writing ${holderPath(lockPath)}`, () =>
        writeFile(holderPath(lockPath), JSON.stringify(holder)),
      ).catch(() => {});
      return {
        kind: "acquired",
        lock: {
          holder,
          intact: () => intact,
          release: async () => {
            await rm(holderPath(lockPath), { force: true }).catch(() => {});
            await release().catch(() => {});
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
    const waitedMs = Date.now() - started;
    const holder = await call(`reading ${holderPath(lockPath)}`, () => readHolder(lockPath));
    const heartbeatAgeMs = await call(`looking at ${lockPath}`, () => heartbeatAge(lockPath));
    if (waitedMs >= timing.waitMs) {
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
    // A holder of this host (and PID namespace) whose process is gone: its lock is over, not
    // in DSFETCH_LOCK_STALE (120 s) but once it missed a refresh (review, 2026-12-05: waiters
    // waited the whole bound, "waiting for <host> pid N" about a dead process). Aged, not
    // removed: proper-lockfile takes it over as any stale lock. A lock refreshed within the
    // interval is left alone: it may be a new holder's whose holder file is not written yet.
    if (
      holder?.label === hostLabel() &&
      holder.pid !== process.pid &&
      !isProcessAlive(holder.pid) &&
      heartbeatAgeMs !== undefined &&
      heartbeatAgeMs > updateMs(timing.staleMs) + 1_000
    ) {
      const aged = await call(`ageing ${lockPath} (its holder is gone)`, () =>
        utimes(lockPath, new Date(0), new Date(0)).then(
          () => true,
          () => false,
        ),
      );
      if (aged) continue;
    }
    options.onWait?.({ holder, waitedMs, heartbeatAgeMs });
    // The holder removes its lock when done: on this machine that wakes us at once.
    await waitForChange(dirname(lockPath), timing.pollMs, options.signal);
  }
}

/**
 * Whether someone holds the lock now (it exists and is not stale), without taking it: what
 * `prune --dry-run` reports, as the real prune would find it (review, 2026-12-05). Storage
 * that cannot tell counts as held.
 */
export async function lockHeld(lockPath: string, staleMs: number): Promise<boolean> {
  return lockfile
    .check(lockPath, { lockfilePath: lockPath, realpath: false, stale: Math.max(5_000, staleMs) })
    .catch(() => true);
}

/** How often a holder refreshes its lock's mtime. */
function updateMs(staleMs: number): number {
  return Math.max(1_000, Math.min(15_000, Math.floor(staleMs / 4)));
}

export function describeHolder(holder: Holder | undefined): string {
  return holder === undefined ? "another process" : `${holder.host} pid ${holder.pid}`;
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
    };
  } catch {
    return undefined;
  }
}

async function heartbeatAge(lockPath: string): Promise<number | undefined> {
  try {
    return Math.max(0, Date.now() - (await stat(lockPath)).mtimeMs);
  } catch {
    return undefined;
  }
}
