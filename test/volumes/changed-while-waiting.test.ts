// Workers that waited for the lock while the holder's folder changed under it (the holder
// restarts on the new listing and publishes it): each waiter lists again once it holds the
// lock and uses what was published. Until 2026-12-07 each waiter in turn downloaded the folder
// from the listing it made before waiting, up to the changed object (412), then listed again
// and found it published: 8 workers on 400 objects made 3,328 object GETs, each "cached"
// (exploratory tester).
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliResult, runCli } from "../harness/cli.ts";
import { type FaultProxy, isListObjectsV2, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

const KiB = 1024;
let root: string;
let bucket: string;
let proxy: FaultProxy;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-changed-waiting-"));
  bucket = await createBucket("changedwaiting");
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy?.close();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** `dsfetch fetch --json` of the datasets on standard input into `storage`, team "ml". */
const fetchArgs = (storage: string) =>
  ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"] as const;

async function until(what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await done()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("a folder changed while workers wait for its holder", () => {
  it("3 waiters: the holder's restart is the only second download; each waiter lists again and uses what was published", async () => {
    const prefix = "set/";
    const objects = new Map<string, Buffer>();
    for (let i = 0; i < 20; i++)
      objects.set(`o${String(i).padStart(2, "0")}.bin`, randomBytes(150 * KiB));
    await Promise.all(
      [...objects].map(([key, body]) => putObject(bucket, `${prefix}${key}`, body)),
    );
    // Object bodies at 1 MiB/s, two in flight: ~1.5 s for the folder.
    proxy.rewriteResponses({
      match: (request, status) =>
        request.method === "GET" && !isListObjectsV2(request) && (status === 200 || status === 206),
      rewrite: (body) => body,
      bytesPerSecond: 1024 * KiB,
    });
    const storage = await mkdtemp(join(root, "storage-"));
    const data = join(storage, "ml", "data");
    const args = fetchArgs(storage);
    const options = {
      env: {
        ...testEnv(),
        AWS_ENDPOINT_URL: proxy.endpoint,
        DSFETCH_LOCK_POLL: "0.2",
        DSFETCH_OBJECT_CONCURRENCY: "2",
      },
      stdin: JSON.stringify([{ uri: `s3://${bucket}/${prefix}`, name: "set" }]),
      timeoutMs: 120_000,
    };
    const listings = () => proxy.requests.filter(isListObjectsV2).length;
    const holder = runCli(args, options);
    await until("the holder's lock", () =>
      stat(join(data, ".dsfetch", "locks", "set.lock")).then(
        () => true,
        () => false,
      ),
    );
    const waiters: Promise<CliResult>[] = [0, 1, 2].map(() => runCli(args, options));
    // Every waiter has listed (the holder once, each waiter once) before the change.
    await until("the waiters' listings", () => listings() >= 4);
    const last = "o19.bin";
    expect(proxy.requests.some((r) => r.target.includes(last))).toBe(false);
    const rewritten = randomBytes(150 * KiB);
    await putObject(bucket, `${prefix}${last}`, rewritten);
    const [first, ...others] = await Promise.all([holder, ...waiters]);
    proxy.rewriteResponses(undefined);

    for (const run of [first, ...others]) expect(run?.code, run?.stderr).toBe(0);
    expect(first?.stderr).toMatch(/starting again on the new version/);
    for (const run of others) {
      expect(JSON.parse(run.stdout).datasets[0].cached, run.stderr).toBe(true);
      expect(run.stderr).not.toMatch(/starting again/);
      expect(run.stderr).toMatch(
        /published at \d{4}-\d\d-\d\dT[\d:.]+Z, just before or while this worker waited, from another version/,
      );
    }
    // The holder: 20 objects, the changed one refused (412) then fetched again. Each waiter
    // fetched up to 19 more before.
    const objectGets = proxy.requests.filter((r) => r.method === "GET" && !isListObjectsV2(r));
    expect(objectGets.length).toBeLessThanOrEqual(22);
    const expected = new Map(objects).set(last, rewritten);
    const dataset = join(data, "set");
    expect((await readdir(dataset)).sort()).toEqual([...expected.keys()].sort());
    for (const [key, body] of expected) {
      expect(sha(await readFile(join(dataset, key))), key).toBe(sha(body));
    }
  }, 150_000);

  it("published by another worker while this one listed (the lock free by then): listed again, not downloaded from the old listing", async () => {
    const prefix = "listed/";
    const objects = new Map<string, Buffer>();
    for (let i = 0; i < 6; i++) objects.set(`o${i}.bin`, randomBytes(64 * KiB));
    await Promise.all(
      [...objects].map(([key, body]) => putObject(bucket, `${prefix}${key}`, body)),
    );
    // This worker's listing answered slowly: the folder as it was when listed (~3 KB of XML
    // at 600 B/s: ~5 s), while another worker stages the changed folder meanwhile.
    const slow = await startFaultProxy(s3Info().endpoint);
    try {
      slow.rewriteResponses({
        match: (request) => isListObjectsV2(request),
        rewrite: (body) => body,
        bytesPerSecond: 600,
      });
      const storage = await mkdtemp(join(root, "storage-"));
      const args = fetchArgs(storage);
      const stdin = JSON.stringify([{ uri: `s3://${bucket}/${prefix}`, name: "set" }]);
      const env = (endpoint: string) => ({
        env: { ...testEnv(), AWS_ENDPOINT_URL: endpoint, DSFETCH_LOCK_POLL: "0.2" },
        stdin,
        timeoutMs: 120_000,
      });
      const late = runCli(args, env(slow.endpoint));
      await until("the slow worker's listing", () => slow.requests.some(isListObjectsV2));
      const rewritten = randomBytes(64 * KiB);
      await putObject(bucket, `${prefix}o5.bin`, rewritten);
      const first = await runCli(args, env(s3Info().endpoint));
      expect(first.code, first.stderr).toBe(0);
      // The slow listing is still on its way: this test shows the race only if so.
      expect(slow.requests.filter(isListObjectsV2).map((r) => r.complete)).toEqual([false]);
      const second = await late;
      expect(second.code, second.stderr).toBe(0);
      expect(JSON.parse(second.stdout).datasets[0].cached, second.stderr).toBe(true);
      expect(second.stderr).not.toMatch(/starting again/);
      expect(second.stderr).toMatch(
        /published at \d{4}-\d\d-\d\dT[\d:.]+Z, just before or while this worker asked the store, from another version/,
      );
      // Not one object asked for through its proxy: the second listing found it published.
      expect(slow.requests.filter((r) => r.method === "GET" && !isListObjectsV2(r))).toEqual([]);
      const dataset = join(storage, "ml", "data", "set");
      expect(sha(await readFile(join(dataset, "o5.bin")))).toBe(sha(rewritten));
    } finally {
      await slow.close();
    }
  }, 150_000);
});
