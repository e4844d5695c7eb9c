// Against the real S3 server: objects uploaded with each additional checksum algorithm (the
// SDK computes the upload checksums, the server checks them and reports its own), single PUT
// and multipart, COMPOSITE and FULL_OBJECT. The module must compute exactly what HEAD
// reports: composites from per-part digests, full-object CRCs from ranges that do not line
// up with the parts. Also pins down what this MinIO returns where (HEAD, GET, Range,
// PartNumber), which the downloader relies on.
import { randomBytes } from "node:crypto";
import {
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  type ChecksumAlgorithm as SdkChecksumAlgorithm,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  type CrcAlgorithm,
  CrcRanges,
  checksumMatches,
  checksumOf,
  chooseChecksum,
  compositeChecksum,
  createChecksum,
  formatChecksum,
  type ObjectChecksum,
} from "../../src/fetch/checksum/index.ts";
import { adminClient, createBucket } from "../harness/s3.ts";

const PART = 5 * 1024 * 1024;
/** Three parts: two of 5 MiB and a short last one. */
const SIZE = 2 * PART + 123_457;
/** Downloader-like ranges that straddle the part boundaries. */
const RANGE = 3 * 1024 * 1024 + 1001;
const CRCS: readonly CrcAlgorithm[] = ["CRC32", "CRC32C", "CRC64NVME"];
const SHAS: readonly ChecksumAlgorithm[] = ["SHA1", "SHA256"];

type ChecksumField = `Checksum${ChecksumAlgorithm}`;
const field = (algorithm: ChecksumAlgorithm): ChecksumField => `Checksum${algorithm}`;

let s3: S3Client;
let bucket: string;
let body: Buffer;
const partSpans = [
  { start: 0, end: PART },
  { start: PART, end: 2 * PART },
  { start: 2 * PART, end: SIZE },
];

beforeAll(async () => {
  s3 = adminClient();
  bucket = await createBucket("checksums");
  body = randomBytes(SIZE);
});

afterAll(() => {
  s3?.destroy();
});

async function putSingle(key: string, algorithm: ChecksumAlgorithm, data: Buffer): Promise<void> {
  await s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: data, ChecksumAlgorithm: algorithm }),
  );
}

/** A multipart upload of `body` in 5 MiB parts; each part's checksum computed by the SDK. */
async function putMultipart(
  key: string,
  algorithm: ChecksumAlgorithm,
  type: "COMPOSITE" | "FULL_OBJECT",
): Promise<void> {
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      ChecksumAlgorithm: algorithm as SdkChecksumAlgorithm,
      ChecksumType: type,
    }),
  );
  const parts: CompletedPart[] = [];
  for (const [i, span] of partSpans.entries()) {
    const out = await s3.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        PartNumber: i + 1,
        Body: body.subarray(span.start, span.end),
        ChecksumAlgorithm: algorithm,
      }),
    );
    const checksum = out[field(algorithm)];
    expect(checksum, `UploadPart ${i + 1} returned its ${algorithm}`).toBeTruthy();
    parts.push({ PartNumber: i + 1, ETag: out.ETag, [field(algorithm)]: checksum });
  }
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      ChecksumType: type,
      MultipartUpload: { Parts: parts },
    }),
  );
}

async function head(key: string, partNumber?: number) {
  return s3.send(
    new HeadObjectCommand({
      Bucket: bucket,
      Key: key,
      ChecksumMode: "ENABLED",
      ...(partNumber === undefined ? {} : { PartNumber: partNumber }),
    }),
  );
}

/** The stored checksum as the downloader would see it; fails the test if none is usable. */
async function reported(key: string, etagParts?: number): Promise<ObjectChecksum> {
  const out = await head(key);
  const choice = chooseChecksum(out, etagParts);
  expect(choice.rejected).toEqual([]);
  if (choice.checksum === undefined) throw new Error(`HEAD ${key} reported no checksum`);
  return choice.checksum;
}

/**
 * CRCs of `data` hashed as a parallel downloader would: RANGE-sized ranges in reverse order,
 * each in uneven chunks, split at `cuts`.
 */
function crcsByRanges(algorithm: CrcAlgorithm, data: Buffer, cuts: number[] = []): CrcRanges {
  const crcs = new CrcRanges(algorithm, cuts);
  const starts: number[] = [];
  for (let start = 0; start < data.length; start += RANGE) starts.push(start);
  for (const start of starts.reverse()) {
    const end = Math.min(data.length, start + RANGE);
    const hasher = crcs.hasher(start);
    for (let at = start; at < end; at += 700_001) {
      hasher.update(data.subarray(at, Math.min(end, at + 700_001)));
    }
    hasher.end();
  }
  return crcs;
}

describe("single PUT: a full-object checksum of the bytes", () => {
  it.each(CHECKSUM_ALGORITHMS)("%s", async (algorithm) => {
    const key = `single/${algorithm}`;
    await putSingle(key, algorithm, body);
    const expected = await reported(key);
    expect(expected.type).toBe("full-object");
    expect(expected.algorithm).toBe(algorithm);

    const whole: ObjectChecksum = {
      algorithm,
      type: "full-object",
      value: checksumOf(algorithm, body),
    };
    expect(checksumMatches(expected, whole)).toBe(true);
    expect(formatChecksum(whole)).toBe((await head(key))[field(algorithm)]);
    if (algorithm === "CRC32" || algorithm === "CRC32C" || algorithm === "CRC64NVME") {
      const ranged = crcsByRanges(algorithm, body).digest(0, SIZE);
      expect(checksumMatches(expected, { ...whole, value: ranged })).toBe(true);
    }
    // One flipped bit anywhere and the verdict changes.
    const damaged = Buffer.from(body);
    damaged[SIZE - 2] = (damaged[SIZE - 2] as number) ^ 0x10;
    expect(checksumMatches(expected, { ...whole, value: checksumOf(algorithm, damaged) })).toBe(
      false,
    );
  });

  it("an empty object: the digest of no bytes", async () => {
    await putSingle("single/empty", "CRC64NVME", Buffer.alloc(0));
    const expected = await reported("single/empty");
    expect(expected.value.toString("hex")).toBe("0000000000000000");
    expect(new CrcRanges("CRC64NVME").digest(0, 0).equals(expected.value)).toBe(true);
  });
});

describe("multipart COMPOSITE: the checksum of the part checksums, `-3`", () => {
  it.each(["CRC32", "CRC32C"] as const)(
    "%s, part CRCs from unaligned ranges",
    async (algorithm) => {
      const key = `composite/${algorithm}`;
      await putMultipart(key, algorithm, "COMPOSITE");
      const expected = await reported(key, 3);
      expect(expected).toMatchObject({ algorithm, type: "composite", parts: 3 });

      const crcs = crcsByRanges(
        algorithm,
        body,
        partSpans.map((span) => span.start),
      );
      const composite = compositeChecksum(
        algorithm,
        partSpans.map((span) => crcs.digest(span.start, span.end)),
      );
      expect(checksumMatches(expected, composite)).toBe(true);
      expect(formatChecksum(composite)).toBe((await head(key))[field(algorithm)]);
      // The whole-object CRC is not what a composite reports.
      expect(crcs.digest(0, SIZE).equals(expected.value)).toBe(false);
    },
  );

  it.each(SHAS)("%s, part digests hashed in order", async (algorithm) => {
    const key = `composite/${algorithm}`;
    await putMultipart(key, algorithm, "COMPOSITE");
    const expected = await reported(key, 3);
    expect(expected).toMatchObject({ algorithm, type: "composite", parts: 3 });

    const digests = partSpans.map((span) => {
      const checksum = createChecksum(algorithm);
      for (let at = span.start; at < span.end; at += 1_000_003) {
        checksum.update(body.subarray(at, Math.min(span.end, at + 1_000_003)));
      }
      return checksum.digest();
    });
    const composite = compositeChecksum(algorithm, digests);
    expect(checksumMatches(expected, composite)).toBe(true);
    expect(formatChecksum(composite)).toBe((await head(key))[field(algorithm)]);
    // Parts out of order give another value.
    const swapped = compositeChecksum(algorithm, [digests[1], digests[0], digests[2]] as Buffer[]);
    expect(checksumMatches(expected, swapped)).toBe(false);
  });
});

describe("multipart FULL_OBJECT: a CRC of the whole object, combined from unaligned ranges", () => {
  it.each(CRCS)("%s", async (algorithm) => {
    const key = `full/${algorithm}`;
    await putMultipart(key, algorithm, "FULL_OBJECT");
    const expected = await reported(key, 3);
    expect(expected).toEqual({
      algorithm,
      type: "full-object",
      value: checksumOf(algorithm, body),
    });
    const ranged = crcsByRanges(algorithm, body).digest(0, SIZE);
    expect(checksumMatches(expected, { algorithm, type: "full-object", value: ranged })).toBe(true);
  });
});

describe("what this MinIO reports, and where", () => {
  it("CRC64NVME multipart asked to be COMPOSITE is stored FULL_OBJECT", async () => {
    await putMultipart("asked-composite/CRC64NVME", "CRC64NVME", "COMPOSITE");
    const out = await head("asked-composite/CRC64NVME");
    expect(out.ChecksumType).toBe("FULL_OBJECT");
    expect(out.ChecksumCRC64NVME).toBe(checksumOf("CRC64NVME", body).toString("base64"));
  });

  it.each(SHAS)("%s FULL_OBJECT multipart uploads are refused", async (algorithm) => {
    await expect(putMultipart(`refused/${algorithm}`, algorithm, "FULL_OBJECT")).rejects.toThrow(
      /Invalid checksum/,
    );
  });

  it("no checksum without ChecksumMode, none on ranged reads, none for objects uploaded without", async () => {
    await putSingle("where/crc32c", "CRC32C", body.subarray(0, 1000));
    const plain = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "where/crc32c" }));
    expect(plain.ChecksumCRC32C).toBeUndefined();
    expect(plain.ChecksumType).toBeUndefined();

    const get = await s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: "where/crc32c", ChecksumMode: "ENABLED" }),
    );
    await get.Body?.transformToByteArray();
    expect(chooseChecksum(get).checksum).toEqual({
      algorithm: "CRC32C",
      type: "full-object",
      value: checksumOf("CRC32C", body.subarray(0, 1000)),
    });

    const ranged = await s3.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: "where/crc32c",
        ChecksumMode: "ENABLED",
        Range: "bytes=0-99",
      }),
    );
    await ranged.Body?.transformToByteArray();
    expect(ranged.ContentRange).toBe("bytes 0-99/1000");
    expect(chooseChecksum(ranged)).toEqual({ checksum: undefined, rejected: [] });

    // Single-request objects give no checksum for PartNumber=1 either.
    const part = await head("where/crc32c", 1);
    expect(part.ContentLength).toBe(1000);
    expect(chooseChecksum(part)).toEqual({ checksum: undefined, rejected: [] });

    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "where/none", Body: "x" }));
    expect(chooseChecksum(await head("where/none"))).toEqual({ checksum: undefined, rejected: [] });
  });

  it("PartNumber gives each part's own checksum, without ChecksumType, for both kinds", async () => {
    for (const [key, algorithm, type] of [
      ["parts/SHA256", "SHA256", "COMPOSITE"],
      ["parts/CRC32C", "CRC32C", "COMPOSITE"],
      ["parts/CRC32", "CRC32", "FULL_OBJECT"],
    ] as const) {
      await putMultipart(key, algorithm, type);
      for (const [i, span] of partSpans.entries()) {
        const out = await head(key, i + 1);
        expect(out.PartsCount).toBe(3);
        expect(out.ContentLength).toBe(span.end - span.start);
        expect(out.ChecksumType).toBeUndefined();
        expect(out[field(algorithm)], `${key} part ${i + 1}`).toBe(
          checksumOf(algorithm, body.subarray(span.start, span.end)).toString("base64"),
        );
        // Without a type or "-N" it reads as a full-object checksum: of the part, not the object.
        expect(chooseChecksum(out).checksum?.type).toBe("full-object");
      }
      const ranged = await s3.send(
        new GetObjectCommand({
          Bucket: bucket,
          Key: key,
          ChecksumMode: "ENABLED",
          Range: `bytes=0-${PART - 1}`,
        }),
      );
      await ranged.Body?.transformToByteArray();
      expect(ranged[field(algorithm)], `${key}: a Range equal to part 1`).toBeUndefined();
    }
  });
});
