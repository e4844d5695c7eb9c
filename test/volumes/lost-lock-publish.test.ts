// A worker that lost its lock (frozen past DSFETCH_LOCK_STALE) finishes its download after
// the worker that took the lock over published a newer version of the source: the newer one
// stays (SPEC §2: refreshed, never swapped back), and both runs succeed with it.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, CLI_ENTRY, runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
/** Each test's own proxy (they run concurrently, each throttling and counting its own). */
const proxies: FaultProxy[] = [];
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-lost-lock-"));
});

async function newProxy(): Promise<FaultProxy> {
  const proxy = await startFaultProxy(s3Info().endpoint);
  proxies.push(proxy);
  return proxy;
}

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()));
  await rm(root, { recursive: true, force: true });
});

/** Through the test's proxy, a 5 s stale bound, small ranges: a holder is frozen mid-download. */
const lockEnv = (proxy: FaultProxy) => ({
  ...testEnv(),
  AWS_ENDPOINT_URL: proxy.endpoint,
  DSFETCH_LOCK_POLL: "0.2",
  DSFETCH_LOCK_STALE: "5",
  DSFETCH_RANGE_SIZE: "1Mi",
  DSFETCH_RANGE_CONCURRENCY: "2",
});

/** A `dsfetch fetch` process, its output collected. */
function startFetch(args: string[], env: Record<string, string>, input: string) {
  const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
    env: baseEnv(env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdin.end(input);
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  return { child, exited, output: () => ({ out, err }) };
}

/** Until a holder has its attempt directory and more than 1 MiB came through the proxy. */
async function downloading(data: string, proxy: FaultProxy): Promise<void> {
  await expect
    .poll(async () => (await readdir(join(data, ".dsfetch", "tmp")).catch(() => [])).length, {
      timeout: 30_000,
    })
    .toBe(1);
  await expect.poll(() => proxy.getBodyBytes(), { timeout: 30_000 }).toBeGreaterThan(1 << 20);
}

// Concurrent: each test waits out a 5 s stale bound with a frozen holder (one after another:
// ~16 s); each has its own bucket, storage and proxy.
describe.concurrent("a publisher whose lock was taken over", () => {
  it("does not swap its older version back over the newer one published meanwhile", async () => {
    // Versioned: the frozen worker's ranges stay pinned to its version (VersionId), so its
    // download completes after the object was overwritten, as a slow one would on AWS.
    const bucket = await createBucket("lost-lock", { versioned: true });
    const older = randomBytes(6 * 1024 * 1024);
    const newer = randomBytes(3 * 1024 * 1024);
    const olderPut = await putObject(bucket, "set/train.bin", older);
    const storage = await mkdtemp(join(root, "swap-"));
    const data = join(storage, "ml", "data");
    const args = ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"];
    const proxy = await newProxy();
    const env = lockEnv(proxy);
    const input = JSON.stringify([{ uri: `s3://${bucket}/set/train.bin`, name: "train" }]);
    proxy.resetCounters();
    proxy.throttle(1024 * 1024);
    const holder = startFetch(args, env, input);
    try {
      const tmp = join(data, ".dsfetch", "tmp");
      await downloading(data, proxy);
      // Frozen mid-download (a paused VM, a stopped container) past the stale bound.
      holder.child.kill("SIGSTOP");
      const newerPut = await putObject(bucket, "set/train.bin", newer);
      expect(newerPut.versionId).not.toBe(olderPut.versionId);
      proxy.throttle(undefined);
      const taker = await runCli(args, { env, stdin: input, timeoutMs: 120_000 });
      expect(taker.code, taker.stderr).toBe(0);
      expect(JSON.parse(taker.stdout).datasets[0]).toMatchObject({
        cached: false,
        etag: newerPut.etag,
      });
      expect(sha(await readFile(join(data, "train", "train.bin")))).toBe(sha(newer));

      holder.child.kill("SIGCONT");
      const { out: stdout, err: stderr } = await holder.exited.then(() => holder.output());
      expect(await holder.exited, stderr).toBe(0);
      // The newer version stays (it was swapped back for the older one before).
      expect(sha(await readFile(join(data, "train", "train.bin")))).toBe(sha(newer));
      expect(stderr).toMatch(
        /lock was taken over during its download, and another worker published another version .* the store has that version now: using that one, not replacing it with this download/,
      );
      // Its result is the version that stays, not the one it downloaded.
      expect(JSON.parse(stdout).datasets[0]).toMatchObject({
        cached: true,
        etag: newerPut.etag,
        versionId: newerPut.versionId,
        bytes: newer.length,
      });
      expect(await readdir(tmp)).toEqual([]);

      // And the next run finds it current: nothing downloaded again.
      proxy.resetCounters();
      const later = await runCli(args, { env, stdin: input, timeoutMs: 60_000 });
      expect(later.code, later.stderr).toBe(0);
      expect(JSON.parse(later.stdout).datasets[0]).toMatchObject({ cached: true });
      expect(proxy.getBodyBytes()).toBe(0);
    } finally {
      holder.child.kill("SIGCONT");
      proxy.throttle(undefined);
    }
  }, 150_000);

  it("still replaces the version it was refreshing when nobody published meanwhile, without asking the store", async () => {
    // The worker that took the lock over died before publishing: the late publisher's newer
    // download is the refresh, and goes in (it threw it away when the store could not be
    // asked: review).
    const bucket = await createBucket("lost-lock-current", { versioned: true });
    const older = randomBytes(1024 * 1024);
    const newer = randomBytes(6 * 1024 * 1024);
    await putObject(bucket, "set/train.bin", older);
    const storage = await mkdtemp(join(root, "current-"));
    const data = join(storage, "ml", "data");
    const args = ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"];
    const proxy = await newProxy();
    const env = lockEnv(proxy);
    const input = JSON.stringify([{ uri: `s3://${bucket}/set/train.bin`, name: "train" }]);
    const first = await runCli(args, { env, stdin: input, timeoutMs: 60_000 });
    expect(first.code, first.stderr).toBe(0);
    const newerPut = await putObject(bucket, "set/train.bin", newer);
    proxy.resetCounters();
    proxy.throttle(1024 * 1024);
    const start = () => startFetch(args, env, input);
    const holder = start();
    let taker: ReturnType<typeof start> | undefined;
    try {
      await downloading(data, proxy);
      holder.child.kill("SIGSTOP");
      // Another worker takes the lock over, then dies before it publishes anything.
      taker = start();
      const holderFile = join(data, ".dsfetch", "locks", "train.lock.holder.json");
      const takerPid = taker.child.pid;
      await expect
        .poll(
          async () =>
            JSON.parse(await readFile(holderFile, "utf8").catch(() => "{}")).pid === takerPid,
          { timeout: 60_000 },
        )
        .toBe(true);
      taker.child.kill("SIGKILL");
      await taker.exited;
      proxy.throttle(undefined);
      // Nobody published meanwhile: the version there is the one it was refreshing, replaced
      // without asking the store (here it could not have: every HEAD is refused).
      proxy.rewriteResponses({
        match: (request) => request.method === "HEAD",
        startLine: () => "HTTP/1.1 403 Forbidden",
        rewrite: () => "",
      });
      holder.child.kill("SIGCONT");
      const { out, err } = await holder.exited.then(() => holder.output());
      expect(await holder.exited, err).toBe(0);
      expect(sha(await readFile(join(data, "train", "train.bin")))).toBe(sha(newer));
      expect(JSON.parse(out).datasets[0]).toMatchObject({ cached: false, etag: newerPut.etag });
      expect(err).not.toMatch(/using that one/);
    } finally {
      holder.child.kill("SIGCONT");
      taker?.child.kill("SIGKILL");
      proxy.throttle(undefined);
      proxy.rewriteResponses(undefined);
    }
  }, 150_000);
});
