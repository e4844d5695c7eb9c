// A holder's refresh sets the times of the lock directory it made, never of whatever is at
// the path by then: a refresh by name that landed after the lock was replaced (an outage
// longer than the stale bound, its takeover) touched the next holder's lock, which then took
// itself for taken over (review of the lock, 2026-12-06). Here the lock is replaced between
// the library's look at it and its refresh, as such a late refresh would find it.
import type * as NodeFs from "node:fs";
import { mkdirSync, rmdirSync, statSync, utimesSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, vi } from "vitest";
import { acquireLock } from "../../src/volumes/lock.ts";
import { useLockPaths } from "../harness/lock-paths.ts";

/** Set by the test: runs once, after the next look (stat) at this path, before its answer. */
const hook = vi.hoisted(() => ({
  path: undefined as string | undefined,
  afterStat: undefined as (() => void) | undefined,
}));

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof NodeFs>();
  const stat = ((path: string, ...rest: unknown[]) => {
    const callback = rest[rest.length - 1] as (error: unknown, stats?: unknown) => void;
    const options = rest.length > 1 ? rest[0] : undefined;
    const answer = (error: unknown, stats?: unknown) => {
      const run = path === hook.path ? hook.afterStat : undefined;
      if (run !== undefined) {
        hook.afterStat = undefined;
        run();
      }
      callback(error, stats);
    };
    if (options === undefined) actual.stat(path, answer);
    else actual.stat(path, options as NodeFs.StatOptions, answer);
  }) as typeof actual.stat;
  return { ...actual, default: { ...actual, stat }, stat };
});

const { newLockPath } = useLockPaths("dsfetch-lock-refresh-");

describe("a refresh after the lock was replaced", () => {
  it("leaves the new lock's time alone; the old holder learns it lost the lock", async () => {
    const lockPath = await newLockPath();
    const compromised: Error[] = [];
    // Refreshed every 1.25 s.
    const outcome = await acquireLock(lockPath, "train", {
      timing: { staleMs: 5_000, pollMs: 250, waitMs: 1_000 },
      onCompromised: (error) => compromised.push(error),
    });
    if (outcome.kind !== "acquired") throw new Error("not acquired");
    const theirs = new Date(Date.now() - 30_000);
    hook.path = lockPath;
    hook.afterStat = () => {
      // Its look saw its own lock; the lock is then another holder's.
      rmdirSync(lockPath);
      mkdirSync(lockPath);
      utimesSync(lockPath, theirs, theirs);
    };
    await sleep(2_000);
    expect(hook.afterStat).toBeUndefined();
    expect(statSync(lockPath).mtimeMs).toBe(theirs.getTime());
    await sleep(1_500);
    expect(compromised.length).toBe(1);
    await outcome.lock.release();
    // Its release leaves the other holder's lock there.
    expect(statSync(lockPath).mtimeMs).toBe(theirs.getTime());
    rmdirSync(lockPath);
  }, 20_000);
});
