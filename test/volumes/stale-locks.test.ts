// removeStaleLocks (lock.ts): what `prune` clears on storage with no inode left for its own
// lock and removal notice. A stale lock is removed as a waiter takes one over (looked at
// twice, the confirmation window apart), holder files left without their lock go too, a lock
// in use stays; the window is waited out between storage calls, not inside one (it was taken
// for hung storage: STALLED), and an interrupt ends it (review, 2026-12-07).
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { removeStaleLocks } from "../../src/volumes/lock.ts";
import type { StorageCall } from "../../src/volumes/storage-call.ts";

let locks: string;
beforeEach(async () => {
  locks = await mkdtemp(join(tmpdir(), "dsfetch-stale-locks-"));
});
afterEach(async () => {
  await rm(locks, { recursive: true, force: true });
});

/** A lock with its holder file, its mtime `ageMs` ago. */
async function lockAged(name: string, ageMs: number): Promise<string> {
  const lock = join(locks, `${name}.lock`);
  await mkdir(lock);
  await writeFile(`${lock}.holder.json`, JSON.stringify({ host: "gone", pid: 1, since: "x" }));
  const then = new Date(Date.now() - ageMs);
  await utimes(lock, then, then);
  return lock;
}

/** A storage call that records how long each call took. */
function timedCalls(): { call: StorageCall; longest: () => number } {
  let longest = 0;
  const call: StorageCall = async (_what, work) => {
    const started = performance.now();
    try {
      return await work(new AbortController().signal, () => {});
    } finally {
      longest = Math.max(longest, performance.now() - started);
    }
  };
  return { call, longest: () => longest };
}

describe("removeStaleLocks", () => {
  it("removes a dead holder's lock and holder file, and a holder file without its lock; keeps a live lock", async () => {
    await lockAged("dead", 3_600_000);
    await lockAged("live", 0);
    await writeFile(join(locks, "orphan.lock.holder.json"), "{}");
    const { call, longest } = timedCalls();
    // Stale bound 5 s: the confirmation window is 3.5 s, waited between calls.
    expect(await removeStaleLocks(locks, 5_000, { call })).toBe(1);
    expect((await readdir(locks)).sort()).toEqual(["live.lock", "live.lock.holder.json"]);
    expect(longest()).toBeLessThan(3_000);
  });

  it("a fresh lock of a dead process of this host goes once it missed a refresh; a live one's stays", async () => {
    const dead = join(locks, "dead-here.lock");
    const live = join(locks, "live-here.lock");
    for (const [lock, pid] of [
      [dead, 2147483646],
      [live, process.ppid],
    ] as const) {
      await mkdir(lock);
      await writeFile(
        `${lock}.holder.json`,
        JSON.stringify({ host: hostname(), pid, since: "x", label: hostLabel() }),
      );
    }
    // Both within the stale bound (8 s): only the dead holder's is over, after a refresh
    // interval (2 s here) and a second, not the confirmation window.
    expect(await removeStaleLocks(locks, 8_000)).toBe(1);
    expect((await readdir(locks)).sort()).toEqual(["live-here.lock", "live-here.lock.holder.json"]);
  });

  it("an interrupt during the confirmation window ends it, nothing removed", async () => {
    const lock = await lockAged("dead", 3_600_000);
    const stop = new AbortController();
    setTimeout(() => stop.abort(new Error("SIGTERM")), 200);
    await expect(removeStaleLocks(locks, 5_000, { signal: stop.signal })).rejects.toThrow();
    expect(existsSync(lock)).toBe(true);
  });
});
