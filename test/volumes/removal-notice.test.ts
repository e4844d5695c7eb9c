// Removal notices: a job that has written its lease waits while a refresh or prune that may
// have missed it has its notice up, and never for a notice that is over.
import {
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
import { afterAll, describe, expect, it, vi } from "vitest";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import {
  awaitRemovalNotices,
  liveRemovalNotices,
  NOTICE_HONOURED_MS,
  type NoticesSeen,
  postRemovalNotice,
  postRemovalNoticeWithin,
  REMOVAL_NOTICE_STALE_MS,
} from "../../src/volumes/removal-notice.ts";
import type { StorageCall } from "../../src/volumes/storage-call.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-removal-notice-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function noticeDirOf(name: string) {
  const location = locationIn(join(root, name), "set");
  const dir = join(location.metaDir, "removals", "set");
  mkdirSync(dir, { recursive: true });
  return { location, dir };
}

describe("removal notices", () => {
  it("a notice up is waited for until it is taken down; then it is gone", async () => {
    const { location, dir } = noticeDirOf("up");
    const notice = await postRemovalNotice(location);
    const [name] = readdirSync(dir);
    expect(name).toMatch(new RegExp(`^${hostLabel()}\\.${process.pid}\\.[0-9a-f]{16}$`));
    let looks = 0;
    const started = performance.now();
    const waiting = awaitRemovalNotices(location, {
      storageNow: Date.now(),
      progressed: () => (looks += 1),
    });
    await sleep(300);
    await notice.withdraw();
    await notice.withdraw();
    expect(await waiting).toEqual([`${hostLabel()} pid ${process.pid}`]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(looks).toBeGreaterThan(2);
    expect(readdirSync(dir)).toEqual([]);
    expect(await awaitRemovalNotices(location, { storageNow: Date.now() })).toEqual([]);
  });

  it("notices that are over are not waited for: a dead process's of this host (removed), one not refreshed for a minute on the storage's clock (left; removed after an hour)", async () => {
    const { location, dir } = noticeDirOf("over");
    const dead = `${hostLabel()}.999999999.aaaaaaaaaaaaaaaa`;
    const old = "otherhost-ns1-b0123456789ab.123.bbbbbbbbbbbbbbbb";
    const fresh = "otherhost-ns1-b0123456789ab.456.cccccccccccccccc";
    for (const name of [dead, old, fresh]) writeFileSync(join(dir, name), "");
    // The storage's clock is an hour behind this machine's: ages are read on the storage's.
    const storageNow = Date.now() - 3_600_000;
    const oldTime = new Date(storageNow - REMOVAL_NOTICE_STALE_MS - 1_000);
    utimesSync(join(dir, old), oldTime, oldTime);
    const freshTime = new Date(storageNow - 1_000);
    utimesSync(join(dir, fresh), freshTime, freshTime);
    utimesSync(join(dir, dead), freshTime, freshTime);
    // An NFS client's trace of a notice removed while open is not a notice.
    writeFileSync(join(dir, ".nfs000000000123abcd00000001"), "");
    expect(await liveRemovalNotices(location, storageNow)).toEqual([
      "otherhost-ns1-b0123456789ab pid 456",
    ]);
    rmSync(join(dir, ".nfs000000000123abcd00000001"));
    // Another host's notice is that host's to take down: only a dead process's of ours goes.
    expect(readdirSync(dir).sort()).toEqual([old, fresh].sort());
    // The fresh one is over a minute after it was last refreshed, on the storage's clock.
    expect(await liveRemovalNotices(location, storageNow + REMOVAL_NOTICE_STALE_MS)).toEqual([]);
    // Not refreshed for an hour: removed by whoever reads it.
    expect(await liveRemovalNotices(location, storageNow + 3_600_000)).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a notice seen unchanged for a minute by this process's clock is over, however fresh its time (mtimes from a client clock ahead); one rewritten meanwhile is not", async () => {
    const { location, dir } = noticeDirOf("seen");
    const name = "otherhost-ns1-b0123456789ab.456.cccccccccccccccc";
    const path = join(dir, name);
    writeFileSync(path, "");
    const mtimeMs = statSync(path).mtimeMs;
    const holder = ["otherhost-ns1-b0123456789ab pid 456"];
    const seen: NoticesSeen = new Map([
      [name, { mtimeMs, since: performance.now() - REMOVAL_NOTICE_STALE_MS + 5_000 }],
    ]);
    expect(await liveRemovalNotices(location, Date.now(), seen)).toEqual(holder);
    seen.set(name, { mtimeMs, since: performance.now() - REMOVAL_NOTICE_STALE_MS - 1 });
    expect(await liveRemovalNotices(location, Date.now(), seen)).toEqual([]);
    expect(readdirSync(dir)).toEqual([name]);
    // Rewritten by its remover since: up again, for another minute.
    seen.set(name, {
      mtimeMs: mtimeMs - 5_000,
      since: performance.now() - REMOVAL_NOTICE_STALE_MS - 1,
    });
    expect(await liveRemovalNotices(location, Date.now(), seen)).toEqual(holder);
  });

  it("a remover's notice is honoured while its refreshes land; once they were late for 30 s, never again (jobs may have taken it for over)", async () => {
    const { location } = noticeDirOf("honoured");
    const real = performance.now.bind(performance);
    let offset = 0;
    const clock = vi.spyOn(performance, "now").mockImplementation(() => real() + offset);
    try {
      const kept = await postRemovalNotice(location, 50);
      // Time runs 10 s at a step; a refresh lands within each step: honoured throughout.
      for (let step = 0; step < 8; step++) {
        offset += 10_000;
        await sleep(200);
        expect(kept.honoured()).toBe(true);
      }
      await kept.withdraw();
      expect(kept.honoured()).toBe(false);

      const late = await postRemovalNotice(location, 50);
      late.abandon();
      offset += NOTICE_HONOURED_MS;
      expect(late.honoured()).toBe(false);
      await late.withdraw();

      // Refreshes held up for 31 s, then landing in a row: still not honoured.
      const held = await postRemovalNotice(location, 50);
      offset += NOTICE_HONOURED_MS + 1_000;
      await sleep(300);
      expect(held.honoured()).toBe(false);
      await held.withdraw();
    } finally {
      clock.mockRestore();
    }
  });

  it("notices that cannot be read are an error, not none", async () => {
    const location = locationIn(join(root, "unreadable"), "set");
    mkdirSync(join(location.metaDir, "removals"), { recursive: true });
    writeFileSync(join(location.metaDir, "removals", "set"), "not a directory");
    await expect(liveRemovalNotices(location, Date.now())).rejects.toMatchObject({
      code: "ENOTDIR",
    });
    await expect(awaitRemovalNotices(location, { storageNow: Date.now() })).rejects.toMatchObject({
      code: "ENOTDIR",
    });
  });

  it("a notice is refreshed while it is up, and no more once abandoned (left up)", async () => {
    const { location, dir } = noticeDirOf("refresh");
    const notice = await postRemovalNotice(location, 50);
    const [name] = readdirSync(dir);
    const path = join(dir, name as string);
    const past = new Date(Date.now() - 30_000);
    utimesSync(path, past, past);
    await expect
      .poll(() => statSync(path).mtimeMs, { timeout: 5_000 })
      .toBeGreaterThan(past.getTime() + 10_000);
    notice.abandon();
    await sleep(100);
    utimesSync(path, past, past);
    await sleep(300);
    expect(statSync(path).mtimeMs).toBe(past.getTime());
    await notice.withdraw();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a notice whose posting was given up on is taken down when it lands", async () => {
    const { location, dir } = noticeDirOf("late");
    let landed: Promise<unknown> | undefined;
    const givenUp: StorageCall = async (_what, work) => {
      landed = work(new AbortController().signal, () => {});
      throw new Error("given up");
    };
    await expect(postRemovalNoticeWithin(givenUp, location)).rejects.toThrow("given up");
    expect(readdirSync(dir)).toEqual([]);
    await landed;
    expect(readdirSync(dir)).toHaveLength(1);
    await expect.poll(() => readdirSync(dir), { timeout: 5_000 }).toEqual([]);
  });

  it("another host's notice is waited for while it is up", async () => {
    const { location, dir } = noticeDirOf("other");
    const path = join(dir, "otherhost-ns1-b0123456789ab.456.cccccccccccccccc");
    writeFileSync(path, "");
    const waiting = awaitRemovalNotices(location, { storageNow: Date.now() });
    let answered = false;
    void waiting.then(() => (answered = true));
    await sleep(200);
    expect(answered).toBe(false);
    rmSync(path);
    expect(await waiting).toEqual(["otherhost-ns1-b0123456789ab pid 456"]);
  });

  it("an interrupt ends the wait", async () => {
    const { location, dir } = noticeDirOf("interrupt");
    writeFileSync(join(dir, "otherhost-ns1.456.cccccccccccccccc"), "");
    const controller = new AbortController();
    const waiting = awaitRemovalNotices(location, {
      storageNow: Date.now(),
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 100);
    await expect(waiting).rejects.toMatchObject({ name: "AbortError" });
  });

  it("nothing there: no wait", async () => {
    const location = locationIn(join(root, "none"), "set");
    expect(await awaitRemovalNotices(location, { storageNow: Date.now() })).toEqual([]);
  });
});
