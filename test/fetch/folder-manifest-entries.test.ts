// A folder's manifest entries are made from its listing when the manifest is written
// (src/fetch/kept-objects.ts ListingFiles), no longer held as an object per file while the
// folder downloads (memory review of folders, 2026-12-06). The manifest must not change by a
// byte: `{path, bytes, digest?}` per object in listing order (UTF-8 byte order), the digest
// left out where there is none, the same listing digest. Here a folder of every kind of
// object is staged against the real store, and its manifest compared byte for byte with the
// one written from the entries as they were held before: an array of
// `digest === undefined ? {path, bytes} : {path, bytes, digest}`.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { type ChecksumAlgorithm, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { stage } from "../../src/stage/stage.ts";
import { sharedLocation } from "../../src/volumes/layout.ts";
import { type ManifestFile, writeManifest } from "../../src/volumes/manifest.ts";
import { type FaultProxy, isListObjectsV2, startFaultProxy } from "../harness/fault-proxy.ts";
import {
  adminClient,
  createBucket,
  putMultipart,
  putMultipartWithChecksum,
  putObject,
  s3Info,
} from "../harness/s3.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const PREFIX = "set/";

const md5 = (body: Buffer) => `md5:${createHash("md5").update(body).digest("hex")}`;
/** A multipart ETag with its part size, as the manifest gives it (fetch/verification.ts). */
const md5Parts = (body: Buffer, partSize: number) => {
  const outer = createHash("md5");
  let parts = 0;
  for (let at = 0; at < body.length; at += partSize, parts++) {
    outer.update(
      createHash("md5")
        .update(body.subarray(at, at + partSize))
        .digest(),
    );
  }
  return `md5parts:${partSize}:${outer.digest("hex")}-${parts}`;
};
const sha256 = (body: Buffer) => `sha256:${createHash("sha256").update(body).digest("base64")}`;
const crc32Of = (body: Buffer) => {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32(body));
  return `crc32:${value.toString("base64")}`;
};

interface Stored {
  readonly key: string;
  readonly body: Buffer;
  /** As the store gives it: lowercase, unquoted. */
  etag: string;
  /** The manifest's digest as the verification gives it: with ETags listed, and without. */
  readonly digest: string | undefined;
  readonly digestWithoutEtags: string | undefined;
}

let root: string;
let bucket: string;
let s3: S3Client;
let proxy: FaultProxy | undefined;
const stored: Stored[] = [];

async function putWithChecksum(key: string, body: Buffer, algorithm: ChecksumAlgorithm) {
  const out = await s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ChecksumAlgorithm: algorithm }),
  );
  return (out.ETag ?? "").replace(/"/g, "").toLowerCase();
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-folder-manifest-"));
  bucket = await createBucket("foldermanifest");
  s3 = adminClient();
  const add = async (
    name: string,
    body: Buffer,
    put: (key: string, body: Buffer) => Promise<string>,
    digest: string | undefined,
    digestWithoutEtags: string | undefined,
  ) => {
    const key = `${PREFIX}${name}`;
    stored.push({ key, body, etag: await put(key, body), digest, digestWithoutEtags });
  };
  const single = async (key: string, body: Buffer) => (await putObject(bucket, key, body)).etag;
  const plain = randomBytes(10 * KiB);
  // Single-part, verified by MD5: "md5:" + its ETag. Without ETags listed, a small one is
  // verified by its size (no digest); a large one by its HEAD's ETag.
  await add("plain.bin", plain, single, md5(plain), undefined);
  const large = randomBytes(1.5 * MiB);
  await add("large-single.bin", large, single, md5(large), md5(large));
  const empty = Buffer.alloc(0);
  await add("empty.bin", empty, single, md5(empty), undefined);
  // Multipart (ETag "…-2"; "…-1" for one part): verified part by part; the digest is the
  // ETag with its part size (list --verify computes it again), none for one part.
  const multi = randomBytes(5 * MiB + 100 * KiB);
  await add(
    "multi.bin",
    multi,
    async (key, body) => (await putMultipart(bucket, key, body, 5 * MiB)).etag,
    md5Parts(multi, 5 * MiB),
    md5Parts(multi, 5 * MiB),
  );
  const onePart = randomBytes(20 * KiB);
  await add(
    "one-part.bin",
    onePart,
    async (key, body) => (await putMultipart(bucket, key, body, 5 * MiB)).etag,
    undefined,
    undefined,
  );
  // S3 additional checksums: the checksum is the digest, whatever the listing says.
  const crc = randomBytes(5 * KiB);
  await add(
    "crc32.bin",
    crc,
    (key, body) => putWithChecksum(key, body, "CRC32"),
    crc32Of(crc),
    crc32Of(crc),
  );
  const sha = randomBytes(5 * KiB);
  await add(
    "sha256.bin",
    sha,
    (key, body) => putWithChecksum(key, body, "SHA256"),
    sha256(sha),
    sha256(sha),
  );
  // A large multipart one is verified by its parts' MD5s while its listed ETag will do (no
  // HEAD; the ETag with its part size is the digest); without ETags listed, its HEAD's
  // full-object checksum is the digest.
  const fullCrc = randomBytes(5 * MiB + KiB);
  await add(
    "full-crc32.bin",
    fullCrc,
    (key, body) => putMultipartWithChecksum(bucket, key, body, 5 * MiB, "CRC32", "FULL_OBJECT"),
    md5Parts(fullCrc, 5 * MiB),
    crc32Of(fullCrc),
  );
  // Keys with characters beyond ASCII (U+FF5E sorts before U+1F600 in UTF-8, not in UTF-16),
  // and with characters a URL encodes.
  for (const name of [
    "ünïcödé/日本語 ファイル.txt",
    "emoji/😀 a+b&c=d.bin",
    "emoji/\uff5e.bin",
    "Zürich/ß.bin",
  ]) {
    const body = randomBytes(3 * KiB);
    await add(name, body, single, md5(body), undefined);
  }
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  s3?.destroy();
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

/** The objects in the order of a listing: UTF-8 byte order of their keys. */
const inListingOrder = () =>
  [...stored].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));

/** Stages the folder through `endpoint`; the published manifest's text. */
async function stageFolder(endpoint: string): Promise<string> {
  const info = s3Info();
  const datasets = parseDatasetsValue(
    [
      {
        uri: `s3://${bucket}/${PREFIX}`,
        name: "set",
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
      },
    ],
    "test",
    { AWS_ENDPOINT_URL: endpoint, AWS_REGION: info.region },
  );
  const storageRoot = await mkdtemp(join(root, "storage-"));
  const settings = resolveSettings({ storageRoot, team: "ml" }, {});
  const result = await stage(datasets, settings, { onEvent: () => {} });
  const [staged] = result.datasets;
  expect(staged?.ok, JSON.stringify(staged)).toBe(true);
  return readFile(sharedLocation(storageRoot, "ml", "set", undefined).manifestPath, "utf8");
}

/**
 * `text` (a published manifest) written again with its own fields and `files`, an array of
 * entries as they were held before.
 */
async function writtenWith(text: string, files: ManifestFile[]): Promise<string> {
  const { files: _, ...head } = JSON.parse(text) as Record<string, unknown>;
  const path = join(await mkdtemp(join(root, "expected-")), "manifest.json");
  await writeManifest(path, { ...head, files } as unknown as Parameters<typeof writeManifest>[1]);
  return readFile(path, "utf8");
}

const entry = (object: Stored, digest: string | undefined): ManifestFile =>
  digest === undefined
    ? { path: object.key.slice(PREFIX.length), bytes: object.body.length }
    : { path: object.key.slice(PREFIX.length), bytes: object.body.length, digest };

describe("a folder's manifest, its entries made from the listing", () => {
  it("is byte for byte the manifest of the entries as held before: every kind of object", async () => {
    const text = await stageFolder(s3Info().endpoint);
    const objects = inListingOrder();
    const expected = await writtenWith(
      text,
      objects.map((object) => entry(object, object.digest)),
    );
    expect(text).toBe(expected);
    // The fields taken from it are what they were too: the listing digest (resolve.ts) and
    // the size.
    const manifest = JSON.parse(text) as { listingDigest: string; bytes: number; files: unknown[] };
    const digest = createHash("sha256");
    for (const object of objects) {
      digest.update(`${object.key}\t${object.body.length}\t${object.etag}\n`);
    }
    expect(manifest.listingDigest).toBe(digest.digest("hex"));
    expect(manifest.bytes).toBe(objects.reduce((sum, object) => sum + object.body.length, 0));
    expect(manifest.files).toHaveLength(stored.length);
  }, 120_000);

  it("the same from a listing without ETags (digests of HEADs and checksums, kept apart)", async () => {
    const p = await startFaultProxy(s3Info().endpoint);
    proxy = p;
    p.rewriteResponses({
      match: (request, status) => isListObjectsV2(request) && status === 200,
      rewrite: (body) => body.toString("utf8").replace(/<ETag>[^<]*<\/ETag>/g, ""),
    });
    const text = await stageFolder(p.endpoint);
    const expected = await writtenWith(
      text,
      inListingOrder().map((object) => entry(object, object.digestWithoutEtags)),
    );
    expect(text).toBe(expected);
  }, 120_000);
});
