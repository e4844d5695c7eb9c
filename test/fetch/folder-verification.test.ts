// How objects of a folder (prefix) dataset are verified where the listing's ETag alone does
// not do (review, 2026-12-06):
// - a large multipart object whose part boundaries cannot be learned (a store that answers
//   501 to HEAD with PartNumber) is verified by the FULL_OBJECT checksum its own HEAD reports;
//   it was verified size-only, "the store reported no additional checksum", never asked;
// - small objects uploaded as one part (`aws s3 cp -` from a pipe: ETag "…-1") are checked
//   against their bytes, the one part spanning the object, 0 bytes included; they were
//   size-only, their boundaries "could not be learned".
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import {
  adminClient,
  createBucket,
  putMultipartWithChecksum as putChecksummedParts,
  putMultipart,
  testEnv,
  type UploadChecksum,
} from "../harness/s3.ts";

const MiB = 1024 * 1024;

interface StagedJson {
  name: string;
  verification?: Record<string, number>;
  error?: { code: string; message: string };
}

let bucket: string;
let scratch: string;
let s3: S3Client;
let proxy: FaultProxy | undefined;
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-folder-verification-"));
  bucket = await createBucket("folderverify");
  s3 = adminClient();
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

afterAll(async () => {
  s3?.destroy();
  await rm(scratch, { recursive: true, force: true });
});

/** A multipart upload with a checksum into this file's bucket (harness/s3.ts). */
const putMultipartWithChecksum = (
  key: string,
  body: Buffer,
  partSize: number,
  algorithm: UploadChecksum,
  type: "COMPOSITE" | "FULL_OBJECT" = "COMPOSITE",
) => putChecksummedParts(bucket, key, body, partSize, algorithm, type);

async function fetchVia(endpoint: string, uri: string) {
  const storage = await mkdtemp(join(scratch, "storage-"));
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
    {
      env: { ...testEnv(), AWS_ENDPOINT_URL: endpoint },
      stdin: JSON.stringify([{ uri, name: "set" }]),
      timeoutMs: 120_000,
    },
  );
  const staged =
    result.stdout === ""
      ? undefined
      : (JSON.parse(result.stdout) as { datasets: StagedJson[] }).datasets[0];
  return { ...result, staged, data: join(storage, "ml", "data") };
}

describe("a large multipart object of a folder whose part boundaries cannot be learned", () => {
  it("is verified by the FULL_OBJECT CRC32 its HEAD reports (HEAD with PartNumber answered 501)", async () => {
    const body = randomBytes(11 * MiB + 7);
    const etag = await putMultipartWithChecksum(
      "refused/model.bin",
      body,
      5 * MiB,
      "CRC32",
      "FULL_OBJECT",
    );
    expect(etag).toMatch(/-3$/);
    proxy = await startFaultProxy(testEnv().AWS_ENDPOINT_URL);
    proxy.rewriteResponses({
      match: (request) => request.method === "HEAD" && request.target.includes("partNumber="),
      rewrite: () => Buffer.alloc(0),
      startLine: () => "HTTP/1.1 501 Not Implemented",
    });
    const result = await fetchVia(proxy.endpoint, `s3://${bucket}/refused/`);
    expect(result.code, result.stderr).toBe(0);
    expect(result.staged?.verification).toEqual({ "checksum:crc32": 1 });
    // The part boundaries were asked for, and refused: else this proves nothing.
    expect(
      proxy.requests.filter((r) => r.method === "HEAD" && r.target.includes("partNumber=")),
    ).not.toEqual([]);
    expect(sha256(await readFile(join(result.data, "set", "model.bin")))).toBe(sha256(body));
  });
});

describe("small objects of a folder uploaded as one multipart part (ETag …-1)", () => {
  const plain = randomBytes(200_000);
  const composite = randomBytes(200_000);

  beforeAll(async () => {
    expect((await putMultipart(bucket, "onepart/plain.bin", plain, 5 * MiB)).etag).toMatch(/-1$/);
    expect(
      (await putMultipart(bucket, "onepart/empty.bin", Buffer.alloc(0), 5 * MiB)).etag,
    ).toMatch(/-1$/);
    const etag = await putMultipartWithChecksum(
      "onepart/composite.bin",
      composite,
      5 * MiB,
      "CRC32C",
      "COMPOSITE",
    );
    expect(etag).toMatch(/-1$/);
    await putMultipartWithChecksum(
      "onepart/composite-empty.bin",
      Buffer.alloc(0),
      5 * MiB,
      "CRC32C",
      "COMPOSITE",
    );
  });

  it("are checked against their bytes: multipart-md5, and the COMPOSITE CRC32C where there is one", async () => {
    proxy = await startFaultProxy(testEnv().AWS_ENDPOINT_URL);
    const result = await fetchVia(proxy.endpoint, `s3://${bucket}/onepart/`);
    expect(result.code, result.stderr).toBe(0);
    expect(result.staged?.verification).toEqual({ "multipart-md5": 2, "checksum:crc32c": 2 });
    // One GET each: no HEAD to learn the boundaries of one part.
    expect(proxy.requests.filter((r) => r.method === "HEAD")).toEqual([]);
    const dir = join(result.data, "set");
    expect((await readdir(dir)).sort()).toEqual([
      "composite-empty.bin",
      "composite.bin",
      "empty.bin",
      "plain.bin",
    ]);
    expect(sha256(await readFile(join(dir, "plain.bin")))).toBe(sha256(plain));
    expect(sha256(await readFile(join(dir, "composite.bin")))).toBe(sha256(composite));
    expect((await readFile(join(dir, "empty.bin"))).length).toBe(0);
  });

  for (const [key, against] of [
    ["plain.bin", /do not match its ETag: expected [0-9a-f]{32}-1, computed [0-9a-f]{32}-1/],
    ["composite.bin", /do not match its CRC32C checksum/],
  ] as const) {
    it(`a byte of ${key} changed in transit: exit 5 INTEGRITY`, async () => {
      proxy = await startFaultProxy(testEnv().AWS_ENDPOINT_URL);
      let done = false;
      proxy.rewriteResponses({
        match: (request, status) =>
          !done &&
          request.method === "GET" &&
          status === 200 &&
          request.target.split("?")[0]?.endsWith(`/onepart/${key}`) === true,
        rewrite: (body) => {
          done = true;
          const copy = Buffer.from(body);
          const at = Math.floor(copy.length / 2);
          copy[at] = (copy[at] as number) ^ 0x5a;
          return copy;
        },
      });
      const result = await fetchVia(proxy.endpoint, `s3://${bucket}/onepart/`);
      expect(done).toBe(true);
      expect(result.code, result.stderr).toBe(5);
      expect(result.staged?.error?.code).toBe("INTEGRITY");
      expect(result.staged?.error?.message).toMatch(against);
    });
  }
});
