// An archive the extractor refuses is confirmed against the store before the error is
// reported (src/stage/expand.ts): hashed to its end, a byte damaged on the way is INTEGRITY,
// a broken object is marked as about the stored object (objectVerified: what lets waiting
// workers skip it, volumes/failure-record.ts). Never when only the size can be checked.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";
import { DEFAULT_TUNING } from "../../src/config/tuning.ts";
import { ObjectGetter } from "../../src/fetch/object-get.ts";
import { expandArchive } from "../../src/stage/expand.ts";
import { createAttempt } from "../../src/volumes/attempt.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import { damageOneGet, type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";
import { tar, file as tarFile } from "./tar-helpers.ts";

let bucket: string;
let scratch: string;
let proxy: FaultProxy;
const getters: ObjectGetter[] = [];
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "rv-confirm-"));
  bucket = await createBucket("rvconfirm");
  proxy = await startFaultProxy(s3Info().endpoint);
});
afterAll(async () => {
  for (const g of getters) g.destroy();
  await proxy.close();
  await rm(scratch, { recursive: true, force: true });
});

async function expand(
  key: string,
  body: Buffer,
  etag: string,
  extra: Record<string, unknown> = {},
  signal?: AbortSignal,
) {
  const info = s3Info();
  const getter = new ObjectGetter({
    endpoint: { url: proxy.endpoint, region: info.region, forcePathStyle: true },
    credentials: async () => ({
      accessKeyId: info.accessKeyId,
      secretAccessKey: info.secretAccessKey,
    }),
    idleTimeoutMs: 5_000,
  });
  getters.push(getter);
  const attempt = await createAttempt(locationIn(scratch, key.replace(/\W/g, "_")));
  const uri = `s3://${bucket}/${key}`;
  return expandArchive({
    spec: {
      index: 0,
      name: "set",
      uri,
      location: { bucket, key, target: "object" } as never,
      etag: undefined,
      versionId: undefined,
      archive: "tar.gz" as never,
      volume: {} as never,
      credentials: undefined,
      endpoint: {} as never,
    },
    resolution: {
      kind: "object",
      bucket,
      key,
      etag,
      versionId: undefined,
      bytes: body.length,
      lastModified: undefined,
      encryption: undefined,
      checksum: undefined,
      checksumRejected: [],
      ...extra,
    },
    parts: undefined,
    client: {
      endpointLabel: "x",
      region: "us-east-1",
      anonymous: false,
      credentialSource: "dataset",
      getter,
    },
    attempt,
    tuning: DEFAULT_TUNING,
    limits: DEFAULT_LIMITS,
    retry: { minDelayMs: 10, maxDelayMs: 50 },
    signal,
    onBytes: () => {},
    errorContext: {
      dataset: "set",
      uri,
      bucket,
      endpoint: "x",
      anonymous: false,
      action: "reading",
    },
  });
}

it("a byte damaged on the way, with an MD5 ETag: INTEGRITY, not a corrupt archive", async () => {
  const good = gzipSync(tar(tarFile("a.bin", randomBytes(2 << 20))), { level: 1 });
  const { etag } = await putObject(bucket, "md5/set.tar.gz", good);
  const flipped = damageOneGet(proxy, "md5/set.tar.gz");
  const error = await expand("md5/set.tar.gz", good, etag).catch((e: unknown) => e);
  proxy.rewriteResponses(undefined);
  expect(flipped()).toBe(1);
  expect(error).toMatchObject({ code: "INTEGRITY", objectVerified: false });
});

it("the same with only the size checkable (an SSE-KMS ETag): not marked as about the object", async () => {
  const good = gzipSync(tar(tarFile("a.bin", randomBytes(2 << 20))), { level: 1 });
  const { etag } = await putObject(bucket, "kms/set.tar.gz", good);
  const flipped = damageOneGet(proxy, "kms/set.tar.gz");
  const error = await expand("kms/set.tar.gz", good, etag, { encryption: "aws:kms" }).catch(
    (e: unknown) => e,
  );
  proxy.rewriteResponses(undefined);
  expect(flipped()).toBe(1);
  expect(error).toMatchObject({ code: "ARCHIVE_INVALID", objectVerified: false });
  expect((error as { hint: string }).hint).not.toMatch(/match/);
});

it("an unsafe first entry with 48 MiB to come: the rest is hashed, the error marked", async () => {
  const body = tar(tarFile("../evil", "x"), tarFile("b.bin", randomBytes(48 << 20)));
  const gz = gzipSync(body, { level: 0 });
  const { etag } = await putObject(bucket, "unsafe/set.tar.gz", gz);
  const error = await expand("unsafe/set.tar.gz", gz, etag).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: "UNSAFE_PATH", objectVerified: true });
  expect((error as { hint: string }).hint).toMatch(
    /\(the object's bytes match its ETag: the object in the store is like this\)$/,
  );
});

it("contents that do not match the extension, refused before extraction: marked too", async () => {
  const body = Buffer.from("just some text, not gzip at all".repeat(100));
  const { etag } = await putObject(bucket, "magic/set.tar.gz", body);
  const error = await expand("magic/set.tar.gz", body, etag).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: "ARCHIVE_INVALID", objectVerified: true });
});
