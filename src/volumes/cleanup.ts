/**
 * Removes temporary data of dead attempts (SPEC §3: "its temporary data is cleaned up").
 * Called while holding the dataset's lock, so no live attempt of the same host should be
 * writing there; attempts of another host are removed only once clearly abandoned.
 */
import { readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { attemptToken, parseAttemptName } from "./attempt.ts";
import { hostLabel } from "./host-label.ts";
import type { DatasetLocation } from "./layout.ts";
import { BIRTH_PROBE_NAME, removeStalePending } from "./occupant.ts";
import { removeTree, removeTreeReporting } from "./permissions.ts";
import { PROBE_NAME, storageClock } from "./storage-clock.ts";

/** `replaced.<12 hex>` (publish.ts; `.json`: its manifest) and `pruned.<12 hex>` (prune.ts). */
const ASIDE_NAME = /^(?:replaced|pruned)\.[0-9a-f]{12}(?:\.json)?$/;
/** A birth-time probe named by a dsfetch before 2026-12-05 (occupant.ts names them now). */
const OLD_BIRTH_PROBE = /^\.birth-probe-[A-Za-z0-9]{6}$/;

/**
 * How long another host's (or container's) attempt must stay untouched to be taken for
 * abandoned by a lock holder, an ephemeral volume's staging, or `plan`: ten minutes, or four
 * stale bounds of the lock if longer.
 */
export function abandonedAfterMs(lockStaleMs: number): number {
  return Math.max(10 * 60_000, 4 * lockStaleMs);
}

/**
 * A holder whose lock was taken over, by its host label (host, PID namespace, boot) and pid,
 * as attempt names carry them. On an ephemeral volume (one host) its partial download is
 * removed at once, before the room for the new download is looked at: a container restarted
 * in its pod could not look up the old holder's process, the partial stayed for ten minutes,
 * and every rank failed NO_SPACE on a volume with room for one copy (exploratory tester,
 * 2026-12-07). A holder only paused (SIGSTOP) fails its writes when it resumes, as one whose
 * lock was taken over on shared storage does.
 */
export interface TakenOver {
  readonly label?: string | undefined;
  readonly pid: number;
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes this dataset's abandoned attempts; returns how many were removed. Never throws.
 * `progressed` is called after each call that answered (the clock it runs under:
 * stage/storage-calls.ts), `signal` stops it.
 */
export async function cleanAbandonedAttempts(
  location: DatasetLocation,
  abandonedAfterMs: number,
  progressed: () => void = () => {},
  signal?: AbortSignal,
  /**
   * prune: every dataset's attempts, not only this one's, and this host's too once idle that
   * long (its pid may belong to another process now). An attempt keeps its directory fresh
   * while it lives (attempt.ts keepAttemptFresh).
   */
  everyDataset = false,
  /** Holders whose lock this process took over: their attempts are abandoned at once. */
  takenOver: readonly TakenOver[] = [],
): Promise<number> {
  const paths = await abandonedAttempts(
    location,
    abandonedAfterMs,
    progressed,
    signal,
    everyDataset,
    takenOver,
  );
  let removed = 0;
  for (const path of paths) {
    if (signal?.aborted === true) break;
    await removeTreeReporting(path, progressed, signal).catch(() => removeTree(path));
    removed += 1;
  }
  // Pending manifests of attempts now gone, naming no tree at the path (occupant.ts).
  if (signal?.aborted !== true) await removeStalePending(location).catch(() => 0);
  progressed();
  return removed;
}

/**
 * What cleanAbandonedAttempts would remove (the same arguments), removing nothing: `plan`
 * counts their room as free on an ephemeral volume, as fetch finds it after its clean-up.
 * Never throws (an unreadable directory holds nothing abandoned).
 */
export async function abandonedAttempts(
  location: DatasetLocation,
  abandonedAfterMs: number,
  progressed: () => void = () => {},
  signal?: AbortSignal,
  everyDataset = false,
  takenOver: readonly TakenOver[] = [],
): Promise<string[]> {
  const dirName = basename(location.path);
  // Attempts name long datasets by a shortened name; a dsfetch before 2026-12-05 wrote the
  // whole name (review: its leftovers of long names were never removed).
  const ownNames = new Set([dirName, attemptToken(dirName)]);
  const thisHost = hostLabel();
  let names: string[];
  try {
    names = await readdir(location.tmpDir);
  } catch {
    return [];
  }
  progressed();
  // Heartbeats are the storage's times: judged by its clock, read once, when first needed.
  let clock: Promise<() => number> | undefined;
  const idleFor = async (path: string, ms: number): Promise<boolean> => {
    if (ms === Number.POSITIVE_INFINITY) return false;
    clock ??= storageClock(location.tmpDir);
    return idleOnStorageFor(path, ms, await clock);
  };
  const found: string[] = [];
  for (const name of names) {
    const parsed = parseAttemptName(name);
    const path = join(location.tmpDir, name);
    let abandoned: boolean;
    // This dataset's attempts, and birth-time probes (of any dataset: they are tiny).
    if (
      parsed !== undefined &&
      (everyDataset || ownNames.has(parsed.dirName) || parsed.dirName === BIRTH_PROBE_NAME)
    ) {
      const here = parsed.host === thisHost;
      const ours = here && parsed.pid === process.pid;
      const tookOver = takenOver.some(
        (holder) => holder.label === parsed.host && holder.pid === parsed.pid,
      );
      abandoned =
        !ours &&
        (tookOver ||
          (here && !isProcessAlive(parsed.pid)) ||
          ((!here || everyDataset) && (await idleFor(path, abandonedAfterMs))));
    } else {
      // Old trees moved aside by a replacing publish or by prune, left by a crash. Matched
      // exactly: a dataset may be named "pruned.resnet50", and its live attempts are not
      // leftovers (found in review, 2026-12-05).
      abandoned =
        (ASIDE_NAME.test(name) || OLD_BIRTH_PROBE.test(name) || PROBE_NAME.test(name)) &&
        (await idleFor(path, abandonedAfterMs));
    }
    progressed();
    if (signal?.aborted === true) break;
    if (abandoned) found.push(path);
  }
  return found;
}

/** Untouched for longer than `ms` by the storage's clock `now` (storage-clock.ts). */
async function idleOnStorageFor(path: string, ms: number, now: () => number): Promise<boolean> {
  try {
    const times = await Promise.all([stat(path), stat(join(path, "data")).catch(() => undefined)]);
    const newest = Math.max(...times.map((s) => s?.mtimeMs ?? 0));
    return now() - newest > ms;
  } catch {
    return false;
  }
}
