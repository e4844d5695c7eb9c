// A folder's large object is hashed by a worker that trails its download; the folder's stall
// clock (stage/stage-dataset.ts) hears from that hashing through downloadPrefix's onProgress
// (without it, a folder of large shards failed with STALLED in the hashing tail: review).
// downloadPrefix against the real store.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StoreClient } from "../../src/fetch/client.ts";
import { downloadPrefix } from "../../src/fetch/download-prefix.ts";
import { ObjectGetter } from "../../src/fetch/object-get.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

const MiB = 1024 * 1024;
const body = randomBytes(64 * MiB);
let scratch: string;
let bucket: string;
let etag: string;
let client: StoreClient;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-prefix-hash-"));
  bucket = await createBucket("prefix-hash");
  etag = (await putObject(bucket, "shards/big.bin", body)).etag;
  const info = s3Info();
  client = {
    endpointLabel: info.endpoint,
    region: "us-east-1",
    anonymous: false,
    credentialSource: "dataset",
    getter: new ObjectGetter({
      endpoint: { url: info.endpoint, region: info.region, forcePathStyle: true },
      credentials: async () => ({
        accessKeyId: info.accessKeyId,
        secretAccessKey: info.secretAccessKey,
      }),
    }),
  };
}, 60_000);
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("a folder's large object", () => {
  it("its hashing reports progress (every 16 MiB hashed)", async () => {
    let reports = 0;
    const result = await downloadPrefix({
      client,
      resolution: {
        kind: "prefix",
        bucket,
        prefix: "shards/",
        objects: [{ key: "shards/big.bin", relativePath: "big.bin", bytes: body.length, etag }],
        bytes: body.length,
        listingDigest: "test",
      },
      destination: scratch,
      errorContext: {
        dataset: "shards",
        uri: `s3://${bucket}/shards/`,
        bucket,
        endpoint: s3Info().endpoint,
        anonymous: false,
        action: "reading",
      },
      onProgress: () => {
        reports += 1;
      },
    });
    expect(result.verification).toEqual({ md5: 1 });
    const written = await readFile(join(scratch, "big.bin"));
    expect(createHash("md5").update(written).digest("hex")).toBe(etag);
    expect(reports).toBe(4);
  }, 60_000);
});
