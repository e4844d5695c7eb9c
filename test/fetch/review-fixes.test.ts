// Behaviours a review of the checksum work asked for: an ambiguous multipart CRC is not
// guessed at; 501 is not retried; a hashing worker that falls behind slows the stream instead
// of queueing it all in memory, and still gives the right digests.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { chooseChecksum } from "../../src/fetch/checksum/index.ts";
import { classifyS3Error, isRetryableS3Error } from "../../src/fetch/s3-errors.ts";
import { createStreamHasher } from "../../src/fetch/stream-hasher.ts";

const MiB = 1024 * 1024;

describe("a multipart CRC without ChecksumType or part count", () => {
  it("is rejected as ambiguous (the ETag verifies instead), with the reason", () => {
    const value = Buffer.alloc(4, 7).toString("base64");
    const choice = chooseChecksum({ ChecksumCRC32: value }, 3);
    expect(choice.checksum).toBeUndefined();
    expect(choice.rejected.join()).toMatch(/full-object or composite is unknown/);
    // With its type, or outside a multipart upload, it is used.
    expect(
      chooseChecksum({ ChecksumCRC32: value, ChecksumType: "FULL_OBJECT" }, 3).checksum?.type,
    ).toBe("full-object");
    expect(chooseChecksum({ ChecksumCRC32: value }, undefined).checksum?.type).toBe("full-object");
  });
});

describe("501 Not Implemented", () => {
  it("is a permanent answer, not retried", () => {
    const error = Object.assign(new Error("nope"), {
      name: "NotImplemented",
      Code: "NotImplemented",
      $metadata: { httpStatusCode: 501 },
    });
    expect(isRetryableS3Error(error)).toBe(false);
    expect(isRetryableS3Error({ ...error, $metadata: { httpStatusCode: 503 } })).toBe(true);
    const classified = classifyS3Error(error, {
      dataset: "d",
      uri: "s3://b/k",
      bucket: "b",
      versionId: undefined,
      endpoint: "e",
      anonymous: false,
      action: "reading",
    });
    expect(classified.code).toBe("S3_ERROR");
  });
});

describe("the stream hasher's worker", () => {
  it("makes a fast sender wait instead of queueing everything, and hashes every byte", async () => {
    const total = 96 * MiB;
    const hasher = createStreamHasher("MD5", [{ start: 0, end: total }], total);
    const expected = createHash("md5");
    let waits = 0;
    const chunk = randomBytes(MiB);
    for (let sent = 0; sent < total; sent += chunk.length) {
      expected.update(chunk);
      const behind = hasher.update(Buffer.from(chunk));
      if (behind !== undefined) {
        waits += 1;
        await behind;
      }
    }
    const [digest] = await hasher.finish();
    expect(digest?.toString("hex")).toBe(expected.digest("hex"));
    expect(waits).toBeGreaterThan(0);
  });
});
