// A live attempt's directory is touched while it downloads: another host takes an attempt left
// untouched for ten minutes for abandoned, and a directory's time does not change while one
// large file in it grows.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { stage } from "../../src/stage/stage.ts";
import { keepAttemptFresh } from "../../src/volumes/attempt.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

// Beats every 50 ms here instead of every minute.
vi.mock("../../src/volumes/attempt.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/attempt.ts")>();
  return { ...actual, keepAttemptFresh: (dir: string) => actual.keepAttemptFresh(dir, 50) };
});

const root = mkdtempSync(join(tmpdir(), "dsfetch-heartbeat-"));
let bucket: string;
let proxy: FaultProxy;

beforeAll(async () => {
  bucket = await createBucket("heartbeat");
  await putObject(bucket, "slow.bin", randomBytes(1_500_000));
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  rmSync(root, { recursive: true, force: true });
});

const longAgo = () => new Date(Date.now() - 3_600_000);

describe("attempt heartbeat", () => {
  it("touches the directory every beat until stopped", async () => {
    const dir = join(root, "unit");
    mkdirSync(dir);
    utimesSync(dir, longAgo(), longAgo());
    const stop = keepAttemptFresh(dir, 50);
    await expect
      .poll(() => statSync(dir).mtimeMs, { timeout: 5_000 })
      .toBeGreaterThan(Date.now() - 60_000);
    stop();
    await sleep(100);
    const past = longAgo();
    utimesSync(dir, past, past);
    await sleep(300);
    expect(statSync(dir).mtimeMs).toBe(past.getTime());
    // Its beats (an entry made and removed) leave nothing behind.
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a download in progress keeps its attempt's directory fresh", async () => {
    const storage = join(root, "storage");
    mkdirSync(storage);
    const info = s3Info();
    const datasets = parseDatasetsValue(
      [
        {
          uri: `s3://${bucket}/slow.bin`,
          awsAccessKeyId: info.accessKeyId,
          awsSecretAccessKey: info.secretAccessKey,
          endpoint: proxy.endpoint,
          region: info.region,
        },
      ],
      "test",
      {},
    );
    proxy.throttle(300_000);
    const staging = stage(datasets, resolveSettings({ storageRoot: storage, team: "t" }, {}));
    try {
      const tmp = join(storage, "t", "data", ".dsfetch", "tmp");
      const attemptDir = async () => {
        const names = readdirSync(tmp, { withFileTypes: true }).filter(
          (entry) => entry.isDirectory() && entry.name.startsWith("slow.bin."),
        );
        return names[0]?.name;
      };
      await expect
        .poll(async () => (await attemptDir()) !== undefined, { timeout: 10_000 })
        .toBe(true);
      const dir = join(tmp, (await attemptDir()) as string);
      const past = longAgo();
      utimesSync(dir, past, past);
      // Still downloading (throttled), and touched again since.
      await expect
        .poll(() => statSync(dir).mtimeMs, { timeout: 5_000 })
        .toBeGreaterThan(Date.now() - 60_000);
      expect(proxy.getBodyBytes()).toBeLessThan(1_500_000);
    } finally {
      proxy.throttle(undefined);
    }
    const result = await staging;
    expect(result.datasets[0]).toMatchObject({ ok: true, bytes: 1_500_000 });
  });
});
