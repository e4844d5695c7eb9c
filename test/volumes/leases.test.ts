// Lease files: those that are over are swept, and a live job's lease swept while its
// refreshes were late is put back.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import {
  activeLeases,
  LEASE_STALE_MS,
  lastUsed,
  markUsed,
  takeLease,
} from "../../src/volumes/usage.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-leases-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("lease files", () => {
  it("leases that are over (a dead process of ours, one not refreshed for 5 minutes) are removed; fresh ones stay", async () => {
    const location = locationIn(join(root, "sweep"), "set");
    const dir = join(location.metaDir, "leases", "set");
    mkdirSync(dir, { recursive: true });
    const dead = `${hostLabel()}.999999999.aaaaaaaa`;
    const old = "otherhost-ns1.123.bbbbbbbb";
    const fresh = "otherhost-ns1.456.cccccccc";
    for (const name of [dead, old, fresh]) writeFileSync(join(dir, name), "");
    const longAgo = new Date(Date.now() - LEASE_STALE_MS - 60_000);
    utimesSync(join(dir, old), longAgo, longAgo);
    const live = await takeLease(location);
    try {
      // Judged by this machine's clock alone (list, plan): reported, but only the dead
      // process's lease is removed (no clock decides that one).
      const reported = await activeLeases(location);
      expect(reported.sort()).toEqual(
        [`${hostLabel()} pid ${process.pid}`, "otherhost-ns1 pid 456"].sort(),
      );
      expect(readdirSync(dir)).toContain(old);
      expect(readdirSync(dir)).not.toContain(dead);
      // Judged by the storage's clock (a remover's: its notice's mtime), the old one goes too.
      const users = await activeLeases(location, Date.now());
      expect(users.sort()).toEqual(
        [`${hostLabel()} pid ${process.pid}`, "otherhost-ns1 pid 456"].sort(),
      );
      const left = readdirSync(dir);
      expect(left).toContain(fresh);
      expect(left).not.toContain(dead);
      expect(left).not.toContain(old);
      expect(left).toHaveLength(2);
    } finally {
      await live.release();
    }
    expect(readdirSync(dir)).toEqual([fresh]);
  });

  it("a live job's lease removed meanwhile is put back at its next refresh; not after its release", async () => {
    const location = locationIn(join(root, "putback"), "set");
    const dir = join(location.metaDir, "leases", "set");
    const lease = await takeLease(location, 50);
    const [name] = readdirSync(dir);
    expect(name).toBeDefined();
    const path = join(dir, name as string);
    rmSync(path);
    await expect.poll(() => existsSync(path), { timeout: 5_000 }).toBe(true);
    await lease.release();
    expect(existsSync(path)).toBe(false);
    await sleep(200);
    expect(existsSync(path)).toBe(false);
  });

  it("a held dataset's last use moves with the job (every refresh, and at the release), not only at its staging", async () => {
    const location = locationIn(join(root, "used"), "set");
    await markUsed(location);
    const usedMark = join(location.metaDir, "used", "set");
    const tenDaysAgo = new Date(Date.now() - 10 * 24 * 3600_000);
    utimesSync(usedMark, tenDaysAgo, tenDaysAgo);
    const lease = await takeLease(location, 50);
    // A job that started ten days ago and still runs: in use now, not "unused for ten days".
    await expect
      .poll(() => Date.now() - statSync(usedMark).mtimeMs, { timeout: 5_000 })
      .toBeLessThan(60_000);
    utimesSync(usedMark, tenDaysAgo, tenDaysAgo);
    await lease.release();
    const used = await lastUsed(location);
    expect(Date.now() - (used?.getTime() ?? 0)).toBeLessThan(60_000);
  });
});
