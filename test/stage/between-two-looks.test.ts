// Looks at the published dataset that change between two of a worker's looks (review of the
// fetch-once lock, 2026-12-06), with the looks scripted (inspectStaged mocked):
// - a waiter told "done" (published while it waited) whose reuse then finds it gone again (a
//   prune or a refresh between the two looks) takes the lock before it downloads; it went on
//   to download without the lock: a herd of waiters woken together could each download it;
// - a pinned version that waited for the lock while jobs took up another version at its path
//   fails PATH_TAKEN saying so, not INTERNAL;
// - a worker that found the dataset not yet published, then no room for it on shared storage
//   and no holder, looks again before it falls back: the holder published (taking the room)
//   and released between its two looks; it downloaded the dataset again into an ephemeral
//   volume. Needs root: a tmpfs the size of about one copy.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { DEFAULT_TUNING } from "../../src/config/tuning.ts";
import { stage } from "../../src/stage/stage.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import { acquireLock } from "../../src/volumes/lock.ts";
import { takeLease } from "../../src/volumes/usage.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { requireRoot } from "../harness/mount-namespace.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

/** What the next looks at the published dataset see: "absent" (as if gone), or what is there. */
const script = vi.hoisted(() => ({ looks: [] as Array<"absent" | "actual"> }));

vi.mock("../../src/volumes/inspect.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/inspect.ts")>();
  return {
    ...actual,
    inspectStaged: async (...args: Parameters<typeof actual.inspectStaged>) => {
      const look = script.looks.shift() ?? "actual";
      return look === "absent"
        ? { exists: false, manifest: undefined }
        : actual.inspectStaged(...args);
    },
  };
});

let root: string;
let bucket: string;
let proxy: FaultProxy;
const body = randomBytes(3 * 1024 * 1024);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-done-gone-"));
  bucket = await createBucket("donegone");
  await putObject(bucket, "set.bin", body);
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

/** One dataset entry with the test server's keys, read through `endpoint`, parsed as a config is. */
function datasetsOf(entry: Record<string, string | undefined>, endpoint: string) {
  const info = s3Info();
  return parseDatasetsValue(
    [
      {
        ...entry,
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
        endpoint,
        region: info.region,
      },
    ],
    "test",
    {},
  );
}

describe("a waiter told the dataset is done, which is gone again at its reuse", () => {
  it("takes the lock (waits for its holder) instead of downloading without it", async () => {
    const _info = s3Info();
    const datasets = datasetsOf({ uri: `s3://${bucket}/set.bin`, name: "set" }, proxy.endpoint);
    const settings = resolveSettings({ storageRoot: root, team: "t" }, {});
    // Published once, for the waiter's look for "done" to find.
    expect((await stage(datasets, settings)).ok).toBe(true);
    const location = locationIn(join(root, "t", "data"), "set");
    const holding = await acquireLock(location.lockPath, "set", { timing: DEFAULT_TUNING.lock });
    if (holding.kind !== "acquired") throw new Error("the test could not take the lock");
    proxy.resetCounters();
    // Its first look (absent: it waits on the lock), the look for "done" while it waits (there),
    // then every look after it (absent: gone again).
    script.looks = ["absent", "actual", "absent", "absent", "absent"];
    const staging = stage(datasets, settings);
    let settled = false;
    void staging.finally(() => {
      settled = true;
    });
    await sleep(2_000);
    // The lock is still held by this test: nothing may have been downloaded meanwhile.
    expect(proxy.getBodyBytes()).toBe(0);
    expect(settled).toBe(false);
    await holding.lock.release();
    const result = await staging;
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(proxy.getBodyBytes()).toBe(body.length);
  }, 30_000);
});

describe("a pinned version that waited for the lock while jobs took up another version at its path", () => {
  it("fails with PATH_TAKEN saying so and what to do, not an internal error", async () => {
    const info = s3Info();
    const versioned = await createBucket("donegone-v", { versioned: true });
    const first = await putObject(versioned, "obj.bin", randomBytes(1024 * 1024));
    const second = await putObject(versioned, "obj.bin", randomBytes(1024 * 1024));
    const pinned = (versionId: string | undefined) =>
      datasetsOf({ uri: `s3://${versioned}/obj.bin`, name: "obj", versionId }, info.endpoint);
    const settings = resolveSettings({ storageRoot: join(root, "pinned"), team: "t" }, {});
    await mkdir(join(root, "pinned"), { recursive: true });
    // A job staged the first version and reads it (its lease).
    expect((await stage(pinned(first.versionId), settings)).ok).toBe(true);
    const location = locationIn(join(root, "pinned", "t", "data"), "obj");
    const lease = await takeLease(location);
    const holding = await acquireLock(location.lockPath, "obj", { timing: DEFAULT_TUNING.lock });
    if (holding.kind !== "acquired") throw new Error("the test could not take the lock");
    try {
      // This job's first look came before that publication; then it waits for the lock.
      script.looks = ["absent"];
      const staging = stage(pinned(second.versionId), settings);
      await sleep(1_000);
      await holding.lock.release();
      const result = await staging;
      expect(result.datasets[0]).toMatchObject({
        ok: false,
        error: {
          code: "PATH_TAKEN",
          message: expect.stringContaining("which jobs started using meanwhile"),
          hint: expect.stringContaining("run again"),
        },
      });
    } finally {
      await lease.release();
    }
  }, 30_000);
});

describe("no room on shared storage because the dataset was just published there", () => {
  it("uses the published dataset; it does not fall back and download it again", async () => {
    requireRoot("a tmpfs the size of one copy of the dataset");
    const mount = join(root, "one-copy");
    await mkdir(mount);
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], {
      encoding: "utf8",
    });
    if (mounted.status !== 0) throw new Error(`mount: ${mounted.stderr}`);
    try {
      const _info = s3Info();
      await putObject(bucket, "five.bin", randomBytes(5 * 1024 * 1024));
      const datasets = datasetsOf({ uri: `s3://${bucket}/five.bin`, name: "five" }, proxy.endpoint);
      const settings = resolveSettings(
        { storageRoot: mount, team: "t", ephemeralRoot: join(root, "eph") },
        {},
      );
      // Published by "the first worker": 5 of the tmpfs's 8 MiB, too little left for another.
      expect((await stage(datasets, settings)).ok).toBe(true);
      proxy.resetCounters();
      // This worker's first look came before that publication.
      script.looks = ["absent"];
      const result = await stage(datasets, settings);
      expect(result.datasets[0], JSON.stringify(result)).toMatchObject({
        ok: true,
        cached: true,
        volume: "shared",
      });
      expect(proxy.getBodyBytes()).toBe(0);
    } finally {
      spawnSync("umount", [mount]);
    }
  }, 30_000);
});
