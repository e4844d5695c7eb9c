// Review, 2026-12-06: a span's retries were counted whatever each attempt brought, and the
// direct path's span is a whole multipart part (up to 5 GiB): a connection reset seven times,
// resuming fine each time, failed the download as TRANSIENT. An attempt that kept at least
// 1 MiB more of its span (range-fetch.ts PROGRESS_REFUND) does not use a retry up; attempts
// that bring next to nothing still do, so a server that sends a few bytes and cuts cannot
// hold a download for ever. Through a TCP proxy that cuts the connections (the real store
// behind it), one span of 12 MiB.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import { downloadObject } from "../../src/fetch/download-object.ts";
import { ObjectGetter } from "../../src/fetch/object-get.ts";
import { DEFAULT_RETRIES } from "../../src/fetch/retry.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

const MiB = 1024 * 1024;
const data = randomBytes(12 * MiB + 321);
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

let bucket: string;
let etag: string;
let scratch: string;
let proxy: FaultProxy | undefined;
let getter: ObjectGetter | undefined;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-retry-progress-"));
  bucket = await createBucket("retry-progress");
  etag = (await putObject(bucket, "blob.bin", data)).etag;
}, 60_000);

afterEach(async () => {
  getter?.destroy();
  getter = undefined;
  await proxy?.close();
  proxy = undefined;
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** The object in one span (one ranged GET, resumed after each cut), through the proxy. */
async function download(name: string, cuts: number[]) {
  const info = s3Info();
  const p = await startFaultProxy(info.endpoint);
  proxy = p;
  for (const offset of cuts) p.cutAt(offset);
  getter = new ObjectGetter({
    endpoint: { url: p.endpoint, region: info.region, forcePathStyle: true },
    credentials: async () => ({
      accessKeyId: info.accessKeyId,
      secretAccessKey: info.secretAccessKey,
    }),
  });
  const destination = join(scratch, name);
  const result = await downloadObject({
    getter,
    source: { bucket, key: "blob.bin", versionId: undefined, etag, bytes: data.length },
    destination,
    rangeSize: data.length,
    concurrency: 1,
    // The default number of retries; short delays (the test's time, not the behaviour).
    retry: { minDelayMs: 5, maxDelayMs: 10 },
    errorContext: {
      dataset: name,
      uri: `s3://${bucket}/blob.bin`,
      bucket,
      endpoint: info.endpoint,
      anonymous: false,
      action: "reading",
    },
  }).catch((error: unknown) => error);
  return { result, destination, fired: p.firedFaults.length };
}

describe("a span whose connection is cut more often than the retries allow", () => {
  it("completes byte-identical when each attempt brought its share (1 MiB and more)", async () => {
    // Cut every 1.1 MiB: ten cuts in a 12 MiB span, against 6 retries.
    const cuts = Array.from({ length: 10 }, (_, i) => Math.round((i + 1) * 1.1 * MiB));
    expect(cuts.length).toBeGreaterThan(DEFAULT_RETRIES + 1);
    const { result, destination, fired } = await download("progress", cuts);
    expect(result).not.toBeInstanceOf(Error);
    expect(fired).toBe(cuts.length);
    const done = result as Awaited<ReturnType<typeof downloadObject>>;
    expect(done.retries).toBe(cuts.length);
    expect(done.verification).toBe("md5");
    expect(sha256(await readFile(destination))).toBe(sha256(data));
  }, 60_000);

  it("still fails (TRANSIENT) after the retries when the attempts bring next to nothing", async () => {
    // Each attempt gets its response head and a few hundred bytes of body, then the cut.
    const cuts = Array.from({ length: 20 }, (_, i) => (i + 1) * 1000);
    const { result, fired } = await download("no-progress", cuts);
    expect(result).toBeInstanceOf(DsfetchError);
    expect((result as DsfetchError).code).toBe("TRANSIENT");
    // The first attempt and the retries, no more.
    expect(fired).toBe(DEFAULT_RETRIES + 1);
  }, 60_000);
});
