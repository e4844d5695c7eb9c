// A streamed archive holds its ranges in memory whole (stage/expand.ts): whatever
// DSFETCH_RANGE_SIZE says, it asks for ranges of at most MAX_STREAM_RANGE, so its memory does
// not grow with the setting (review, 2026-12-06: 1Gi held ~8 GiB of ranges).
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_STREAM_RANGE } from "../../src/stage/expand.ts";
import { tar, file as tarFile } from "../archive/tar-helpers.ts";
import { runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

const MiB = 1024 * 1024;
let root: string;
let bucket: string;
let proxy: FaultProxy;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-range-cap-"));
  bucket = await createBucket("rangecap");
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

describe("a streamed archive's ranges", () => {
  it("are at most 32 MiB with DSFETCH_RANGE_SIZE=1Gi, and the tree is byte-exact", async () => {
    const files = [0, 1, 2].map((i) => ({ name: `shard-${i}.bin`, data: randomBytes(25 * MiB) }));
    const archive = tar(...files.map((f) => tarFile(f.name, f.data)));
    await putObject(bucket, "big.tar", archive);
    const storage = await mkdtemp(join(root, "storage-"));
    proxy.resetCounters();
    const result = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "t", "--json"],
      {
        env: { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint, DSFETCH_RANGE_SIZE: "1Gi" },
        stdin: JSON.stringify([{ uri: `s3://${bucket}/big.tar` }]),
        timeoutMs: 120_000,
      },
    );
    expect(result.code, result.stderr).toBe(0);
    for (const f of files) {
      const got = await readFile(join(storage, "t", "data", "big", f.name));
      expect(got.equals(f.data), f.name).toBe(true);
    }
    const sizes = proxy.requests
      .filter((request) => request.method === "GET" && request.headers.range !== undefined)
      .map((request) => {
        const [, start, end] = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? "") ?? [];
        return Number(end) - Number(start) + 1;
      });
    expect(MAX_STREAM_RANGE).toBe(32 * MiB);
    expect(sizes.length).toBe(Math.ceil(archive.length / MAX_STREAM_RANGE));
    for (const size of sizes) expect(size).toBeLessThanOrEqual(MAX_STREAM_RANGE);
  });
});
