// Helpers for test files (they run in vitest workers) to use the real S3 server started by
// test/global-setup.ts.

import { randomBytes } from "node:crypto";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { inject } from "vitest";
import type { S3ServerInfo } from "./s3-server.ts";

export type { S3ServerInfo } from "./s3-server.ts";

/** The server provided by global setup. */
export function s3Info(): S3ServerInfo {
  const info = inject("s3");
  if (!info) {
    throw new Error(
      "no S3 server was provided: run the tests through vitest with test/global-setup.ts (`npx vitest run`)",
    );
  }
  return info;
}

function clientConfig(info: S3ServerInfo): S3ClientConfig {
  return {
    endpoint: info.endpoint,
    region: info.region,
    forcePathStyle: true,
    credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  };
}

/** A new S3Client with the server's root credentials; the caller owns it. */
export function adminClient(): S3Client {
  return new S3Client(clientConfig(s3Info()));
}

/** A new S3Client that sends unsigned (anonymous) requests. */
export function anonymousClient(): S3Client {
  const info = s3Info();
  return new S3Client({
    ...clientConfig(info),
    credentials: { accessKeyId: "anonymous", secretAccessKey: "anonymous" },
    signer: { sign: async (request) => request },
  });
}

let shared: S3Client | undefined;
/** The client the helpers below use (one per worker, never destroyed by them). */
function client(): S3Client {
  shared ??= adminClient();
  return shared;
}

function stripEtag(etag: string | undefined): string {
  if (!etag) throw new Error("S3 response carried no ETag");
  return etag.replace(/"/g, "").toLowerCase();
}

/**
 * A bucket name unique to this call: `<prefix>-<time>-<random>`, lowercase, at most 63 chars,
 * so every test file owns its buckets even when runs share a server.
 */
export function uniqueBucketName(prefix: string): string {
  const suffix = `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
  let p = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+|-+$/g, "")
    .replace(/^xn--/, "");
  p = p.slice(0, 63 - suffix.length - 1).replace(/-+$/, "");
  return p ? `${p}-${suffix}` : `t-${suffix}`;
}

export async function createBucket(
  prefix: string,
  opts: { versioned?: boolean; publicRead?: boolean } = {},
): Promise<string> {
  const bucket = uniqueBucketName(prefix);
  await client().send(new CreateBucketCommand({ Bucket: bucket }));
  if (opts.versioned) {
    await client().send(
      new PutBucketVersioningCommand({
        Bucket: bucket,
        VersioningConfiguration: { Status: "Enabled" },
      }),
    );
  }
  if (opts.publicRead) await setPublicRead(bucket);
  return bucket;
}

export interface PutResult {
  /** lowercase, without quotes; `<md5>-<parts>` for multipart uploads */
  etag: string;
  versionId?: string;
}

export async function putObject(
  bucket: string,
  key: string,
  body: Buffer | string,
): Promise<PutResult> {
  const out = await client().send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  return withVersion(stripEtag(out.ETag), out.VersionId);
}

function withVersion(etag: string, versionId: string | undefined): PutResult {
  return versionId && versionId !== "null" ? { etag, versionId } : { etag };
}

/** A real multipart upload: parts of `partSize` bytes (the last one shorter). */
export async function putMultipart(
  bucket: string,
  key: string,
  body: Buffer,
  partSize: number,
): Promise<PutResult> {
  if (!(partSize > 0)) throw new Error(`putMultipart: partSize must be > 0, got ${partSize}`);
  const pieces: Buffer[] = [];
  for (let offset = 0; offset < body.length || pieces.length === 0; offset += partSize) {
    pieces.push(body.subarray(offset, offset + partSize));
  }
  return putParts(bucket, key, pieces);
}

/** A real multipart upload of exactly these parts (each but the last at least 5 MiB). */
export async function putParts(bucket: string, key: string, pieces: Buffer[]): Promise<PutResult> {
  const { UploadId } = await client().send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  );
  if (!UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
  const parts: { ETag: string; PartNumber: number }[] = [];
  for (const [index, piece] of pieces.entries()) {
    const n = index + 1;
    const out = await client().send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n, Body: piece }),
    );
    if (!out.ETag) throw new Error(`UploadPart ${n} returned no ETag`);
    parts.push({ ETag: out.ETag, PartNumber: n });
  }
  const out = await client().send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
  return withVersion(stripEtag(out.ETag), out.VersionId);
}

/** The S3 additional checksum algorithms an upload can ask for. */
export type UploadChecksum = "CRC32" | "CRC32C" | "SHA1" | "SHA256" | "CRC64NVME";

/**
 * A real multipart upload with an S3 additional checksum, COMPOSITE or FULL_OBJECT: parts of
 * `partSize` bytes (one part for an empty body). Returns the ETag, unquoted.
 */
export async function putMultipartWithChecksum(
  bucket: string,
  key: string,
  body: Buffer,
  partSize: number,
  algorithm: UploadChecksum,
  type: "COMPOSITE" | "FULL_OBJECT" = "COMPOSITE",
): Promise<string> {
  const { UploadId } = await client().send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      ChecksumAlgorithm: algorithm,
      ChecksumType: type,
    }),
  );
  const parts: Array<Record<string, unknown>> = [];
  for (let offset = 0, n = 1; offset < body.length || n === 1; offset += partSize, n++) {
    const out = await client().send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        PartNumber: n,
        Body: body.subarray(offset, offset + partSize),
        ChecksumAlgorithm: algorithm,
      }),
    );
    parts.push({
      PartNumber: n,
      ETag: out.ETag,
      [`Checksum${algorithm}`]: out[`Checksum${algorithm}` as keyof typeof out],
    });
  }
  const out = await client().send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      ChecksumType: type,
      MultipartUpload: { Parts: parts },
    }),
  );
  return stripEtag(out.ETag);
}

/** Deletes `key`; in a versioned bucket returns the versionId of the delete marker created. */
export async function deleteObject(bucket: string, key: string): Promise<string | undefined> {
  const out = await client().send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  return out.DeleteMarker && out.VersionId && out.VersionId !== "null" ? out.VersionId : undefined;
}

/**
 * Uploads `count` objects with keys `${prefix}${i}` (i = 0…count-1, not zero-padded) with
 * bounded concurrency. Returns the keys in index order.
 */
export async function putMany(
  bucket: string,
  prefix: string,
  count: number,
  bodyFor: (i: number) => Buffer,
  concurrency = 32,
): Promise<string[]> {
  const keys = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const key = keys[i] as string;
      await client().send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bodyFor(i) }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return keys;
}

/** Bucket policy allowing anonymous s3:GetObject and s3:ListBucket. */
export async function setPublicRead(bucket: string): Promise<void> {
  const policy = {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Principal: { AWS: ["*"] },
        Action: ["s3:GetBucketLocation", "s3:ListBucket"],
        Resource: [`arn:aws:s3:::${bucket}`],
      },
      {
        Effect: "Allow",
        Principal: { AWS: ["*"] },
        Action: ["s3:GetObject"],
        Resource: [`arn:aws:s3:::${bucket}/*`],
      },
    ],
  };
  await client().send(
    new PutBucketPolicyCommand({ Bucket: bucket, Policy: JSON.stringify(policy) }),
  );
}

/**
 * Environment for a spawned dsfetch process to reach the server. AWS_EC2_METADATA_DISABLED keeps
 * the default credential chain from probing 169.254.169.254 (only loopback traffic is allowed).
 */
export function testEnv(): {
  AWS_ENDPOINT_URL: string;
  AWS_ACCESS_KEY_ID: string;
  AWS_SECRET_ACCESS_KEY: string;
  AWS_REGION: "us-east-1";
  AWS_EC2_METADATA_DISABLED: "true";
} {
  const info = s3Info();
  return {
    AWS_ENDPOINT_URL: info.endpoint,
    AWS_ACCESS_KEY_ID: info.accessKeyId,
    AWS_SECRET_ACCESS_KEY: info.secretAccessKey,
    AWS_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
  };
}
