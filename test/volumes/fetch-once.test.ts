// Fetching once across workers (SPEC §3) with real processes: many `dsfetch fetch` started
// together download a dataset once; a holder killed with SIGKILL is taken over.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, CLI_SOURCE, type CliResult, runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let proxy: FaultProxy;
const body = randomBytes(24 * 1024 * 1024);
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-once-"));
  bucket = await createBucket("once");
  await putObject(bucket, "shared/train.bin", body);
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

const datasets = () => JSON.stringify([{ uri: `s3://${bucket}/shared/train.bin`, name: "train" }]);
const env = (extra: Record<string, string> = {}) => ({
  ...testEnv(),
  AWS_ENDPOINT_URL: proxy.endpoint,
  DSFETCH_LOCK_POLL: "0.2",
  ...extra,
});

describe("fetch once across processes", () => {
  it("16 processes started together: one download (bytes served <= 1.05x), all exit 0, one dataset", async () => {
    const storage = await mkdtemp(join(root, "sixteen-"));
    proxy.resetCounters();
    const runs = await Promise.all(
      Array.from({ length: 16 }, () =>
        runCli(["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"], {
          env: env(),
          stdin: datasets(),
          timeoutMs: 180_000,
        }),
      ),
    );
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const served = proxy.getBodyBytes();
    expect(served).toBeLessThanOrEqual(1.05 * body.length);
    expect(served).toBeGreaterThanOrEqual(body.length);
    const fresh = runs.filter((run) => JSON.parse(run.stdout).datasets[0].cached === false);
    expect(fresh.length).toBe(1);
    const waited = runs.filter((run) => run.stderr.includes("waiting for"));
    expect(waited.length).toBeGreaterThan(0);
    const data = join(storage, "ml", "data");
    expect((await readdir(data)).filter((name) => !name.startsWith("."))).toEqual(["train"]);
    expect(sha(await readFile(join(data, "train", "train.bin")))).toBe(sha(body));
    expect(await readdir(join(data, ".dsfetch", "tmp"))).toEqual([]);
  });

  it("a holder killed with SIGKILL mid-download is taken over; no partial data; leftovers cleaned", async () => {
    const storage = await mkdtemp(join(root, "kill-"));
    const data = join(storage, "ml", "data");
    const args = ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"];
    const lockEnv = env({
      DSFETCH_LOCK_STALE: "5",
      DSFETCH_RANGE_SIZE: "1Mi",
      DSFETCH_RANGE_CONCURRENCY: "2",
    });
    proxy.throttle(3 * 1024 * 1024);
    try {
      const holder = spawn(process.execPath, [CLI_SOURCE, ...args], {
        env: baseEnv(lockEnv),
        stdio: ["pipe", "ignore", "ignore"],
      });
      holder.stdin.end(datasets());
      // Wait until it holds the lock and has written part of the object.
      const lock = join(data, ".dsfetch", "locks", "train.lock");
      for (let i = 0; i < 200; i++) {
        const locked = await stat(lock).then(
          () => true,
          () => false,
        );
        const attempts = await readdir(join(data, ".dsfetch", "tmp")).catch(() => [] as string[]);
        if (locked && attempts.length > 0 && proxy.getBodyBytes() > 2 * 1024 * 1024) break;
        await sleep(100);
      }
      expect(await readdir(join(data, ".dsfetch", "tmp"))).toHaveLength(1);
      const waiters: Promise<CliResult>[] = [0, 1].map(() =>
        runCli(args, { env: lockEnv, stdin: datasets(), timeoutMs: 120_000 }),
      );
      await sleep(500);
      holder.kill("SIGKILL");
      await new Promise((resolve) => holder.on("close", resolve));
      const killedAt = Date.now();
      // Nothing is published by a killed holder.
      await expect(stat(join(data, "train"))).rejects.toThrow();
      proxy.throttle(undefined);
      const results = await Promise.all(waiters);
      for (const result of results) expect(result.code, result.stderr).toBe(0);
      // Taken over within the stale bound (5 s) plus polls and the download itself.
      expect(Date.now() - killedAt).toBeLessThan(30_000);
      expect(results.some((result) => result.stderr.includes("waiting for"))).toBe(true);
      expect(sha(await readFile(join(data, "train", "train.bin")))).toBe(sha(body));
      expect(await readdir(join(data, ".dsfetch", "tmp"))).toEqual([]);
    } finally {
      proxy.throttle(undefined);
    }
  });

  it("reuse when unchanged: a second run makes no data request", async () => {
    const storage = await mkdtemp(join(root, "reuse-"));
    const first = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml"],
      {
        env: env(),
        stdin: datasets(),
      },
    );
    expect(first.code).toBe(0);
    proxy.resetCounters();
    const second = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
      {
        env: env(),
        stdin: datasets(),
      },
    );
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout).datasets[0].cached).toBe(true);
    expect(proxy.requests.filter((request) => request.method === "GET")).toEqual([]);
    expect(proxy.getBodyBytes()).toBe(0);
  });
});
