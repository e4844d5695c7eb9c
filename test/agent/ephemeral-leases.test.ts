// Jobs hold ephemeral datasets as they hold shared ones: the default ephemeral root is one per
// user and machine, so two jobs of one user on one node share it, and a second job staging a
// changed source replaced the tree in place under the first (review, 2026-12-05: the first
// job read v1, then v2, from one path). Also: a lease's refresh takes the storage's time (a
// write), not this machine's clock.
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { locationIn } from "../../src/volumes/layout.ts";
import { takeLease } from "../../src/volumes/usage.ts";
import { runCli } from "../harness/cli.ts";
import { start } from "../harness/cli-process.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-ephemeral-leases-"));
  bucket = await createBucket("ephlease");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("an ephemeral dataset in use", () => {
  it("is not refreshed under the job reading it; the first run after the job refreshes it", async () => {
    await putObject(bucket, "eph/a.txt", "one");
    const ephemeral = join(root, "eph-root");
    const flags = ["--storage-root", join(root, "no-shared"), "--team", "t"];
    const entry = { uri: `s3://${bucket}/eph/`, volumeOptions: { kind: "dynamic", size: "1Mi" } };
    const env = { ...testEnv(), DSFETCH_EPHEMERAL_ROOT: ephemeral };
    const go = join(root, "go");
    // The job reads a.txt, waits for `go`, and reads the dataset again.
    const job = start(
      [
        "run",
        "--datasets",
        "-",
        ...flags,
        "--mount-root",
        join(root, "mnt-1"),
        "--",
        "sh",
        "-c",
        `cat "$DSFETCH_PATH_EPH/a.txt"; echo; while [ ! -e '${go}' ]; do sleep 0.1; done; cat "$DSFETCH_PATH_EPH/a.txt"; echo; ls "$DSFETCH_PATH_EPH"`,
      ],
      env,
      JSON.stringify([entry]),
    );
    await expect.poll(() => job.stdout(), { timeout: 30_000 }).toContain("one");

    await putObject(bucket, "eph/a.txt", "two");
    await putObject(bucket, "eph/b.txt", "new");
    const second = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: JSON.stringify([entry]),
    });
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout).datasets[0]).toMatchObject({
      volume: "ephemeral",
      path: join(ephemeral, "eph"),
      cached: true,
      keptInUse: [expect.stringMatching(/ pid \d+$/)],
    });
    expect(second.stderr).toMatch(/is in use .*: kept as it is, not replaced under the jobs/);

    await writeFile(go, "");
    expect((await job.exit).code, job.stderr()).toBe(0);
    // The same version all along.
    expect(job.stdout().trim().split("\n")).toEqual(["one", "one", "a.txt"]);

    // No job now: the next run refreshes it.
    const third = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: JSON.stringify([entry]),
    });
    expect(third.code, third.stderr).toBe(0);
    expect(JSON.parse(third.stdout).datasets[0]).toMatchObject({ cached: false });
    expect((await readdir(join(ephemeral, "eph"))).sort()).toEqual(["a.txt", "b.txt"]);
  }, 120_000);
});

describe("a lease's refresh", () => {
  it("moves its time by a write (the storage's clock), not by setting this machine's", async () => {
    const location = locationIn(join(root, "lease-clock"), "d");
    // This machine's clock ten minutes behind the storage's (only Date: timers run).
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() - 600_000 });
    const lease = await takeLease(location, 50);
    try {
      await sleep(400);
      const dir = join(location.metaDir, "leases", "d");
      const [file] = await readdir(dir);
      const mtimeMs = (await stat(join(dir, file as string))).mtimeMs;
      const storageNow = performance.timeOrigin + performance.now();
      // Refreshed with utimes(new Date()), it was ten minutes in the past: stale to others.
      expect(Math.abs(storageNow - mtimeMs)).toBeLessThan(60_000);
    } finally {
      vi.useRealTimers();
      await lease.release();
    }
  });
});
