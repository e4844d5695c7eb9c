// Behaviours a review of the checksum work asked for: an ambiguous multipart CRC is not
// guessed at; 501 is not retried; a hashing worker that falls behind slows the stream instead
// of queueing it all in memory, and still gives the right digests.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { chooseChecksum } from "../../src/fetch/checksum/index.ts";
import { S3HttpError } from "../../src/fetch/object-get.ts";
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

describe("a bare 400 on a bucket name most stores refuse", () => {
  const context = (bucket: string) => ({
    dataset: "d",
    uri: `s3://${bucket}/k.zip`,
    bucket,
    versionId: undefined,
    endpoint: "e",
    anonymous: false,
    action: "reading",
  });
  const badRequest = { name: "BadRequest", $metadata: { httpStatusCode: 400 } };

  it("names the bucket and the naming rule", () => {
    for (const bucket of ["zh", "My_Bucket", "-b-"]) {
      const classified = classifyS3Error(badRequest, context(bucket));
      expect(classified.code).toBe("S3_ERROR");
      expect(classified.hint).toContain(`the bucket name "${bucket}" is not valid for most stores`);
    }
  });

  it("keeps the general hint for a valid name", () => {
    expect(classifyS3Error(badRequest, context("my-bucket.v2")).hint).toBe(
      "the store refused the request; check the URI, endpoint and region",
    );
  });
});

// Review, 2026-12-06: with a versionId pinned, every 400 was "no such version", an expired
// session token too, and the user went looking for a version that exists.
describe("a 400 about the credentials, with a versionId pinned", () => {
  const context = {
    dataset: "d",
    uri: "s3://b/k",
    bucket: "b",
    versionId: "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    endpoint: "e",
    anonymous: false,
    action: "reading",
  };

  it("is ACCESS_DENIED saying what to do, not NO_SUCH_VERSION", () => {
    for (const [code, hint] of [
      ["ExpiredToken", /session token has expired/],
      ["InvalidToken", /credentials may read this bucket/],
    ] as const) {
      // As the download path's client throws it (object-get.ts), and in the SDK's shape.
      const answers = [
        new S3HttpError(400, code, "The provided token is not valid", {}),
        Object.assign(new Error("The provided token is not valid"), {
          name: code,
          Code: code,
          $metadata: { httpStatusCode: 400 },
        }),
      ];
      for (const answer of answers) {
        const classified = classifyS3Error(answer, context);
        expect(classified.code, code).toBe("ACCESS_DENIED");
        expect(classified.hint).toMatch(hint);
        expect(classified.retryable).toBe(false);
      }
    }
  });

  it("leaves the version's own answers as they were", () => {
    const noVersion = classifyS3Error(
      new S3HttpError(400, "InvalidArgument", "Invalid version id specified", {}),
      context,
    );
    expect(noVersion.code).toBe("NO_SUCH_VERSION");
    expect(noVersion.message).toContain(context.versionId);
    expect(noVersion.message).not.toContain("refused");
    // A HEAD's 400 has no body to say why: still read as the version, but saying it may be
    // the credentials (review, 2026-12-06: an expired token read as "no such version").
    const bodiless = classifyS3Error(
      { name: "BadRequest", $metadata: { httpStatusCode: 400 } },
      context,
    );
    expect(bodiless.code).toBe("NO_SUCH_VERSION");
    expect(bodiless.message).toContain(
      "or the request was refused: a 400 without a reason, e.g. an expired session token",
    );
    expect(bodiless.hint).toContain("the credentials are still valid");
    expect(
      classifyS3Error(new S3HttpError(404, "NoSuchVersion", "no such version", {}), context).code,
    ).toBe("NO_SUCH_VERSION");
    expect(
      classifyS3Error(new S3HttpError(403, "AccessDenied", "Access Denied", {}), context).code,
    ).toBe("ACCESS_DENIED");
  });
});

describe("the stream hasher's worker", () => {
  it("makes a fast sender wait instead of queueing everything, and hashes every byte", async () => {
    // Distinct bytes in every chunk, odd chunk sizes, several spans, and the sender's buffer
    // overwritten as soon as update() returns: a batch reused too early, sent twice or out
    // of order, or a reference kept to the sender's buffer gives other digests.
    const spans = [
      { start: 0, end: 40 * MiB + 123 },
      { start: 40 * MiB + 123, end: 81 * MiB },
      { start: 81 * MiB, end: 96 * MiB },
    ];
    const total = 96 * MiB;
    const hasher = createStreamHasher("MD5", spans, total);
    const expected = spans.map(() => createHash("md5"));
    let waits = 0;
    const scratch = Buffer.alloc(3 * MiB);
    for (let sent = 0, i = 0; sent < total; i++) {
      const size = Math.min(total - sent, [MiB, 65_536 + 17, 3 * MiB - 5, 1000][i % 4] ?? MiB);
      const chunk = scratch.subarray(0, size);
      randomBytes(size).copy(chunk);
      for (const [n, span] of spans.entries()) {
        const from = Math.max(sent, span.start);
        const to = Math.min(sent + size, span.end);
        if (from < to) expected[n]?.update(chunk.subarray(from - sent, to - sent));
      }
      sent += size;
      const behind = hasher.update(chunk);
      chunk.fill(0);
      if (behind !== undefined) {
        waits += 1;
        await behind;
      }
    }
    const digests = await hasher.finish();
    expect(digests.map((d) => d.toString("hex"))).toEqual(expected.map((h) => h.digest("hex")));
    expect(waits).toBeGreaterThan(0);
  });

  it("fails the sender instead of leaving it waiting once its worker is gone", async () => {
    const total = 96 * MiB;
    const hasher = createStreamHasher("MD5", [{ start: 0, end: total }], total);
    hasher.dispose();
    const chunk = randomBytes(MiB);
    const send = async () => {
      for (let sent = 0; sent < total; sent += chunk.length) {
        const behind = hasher.update(chunk);
        if (behind !== undefined) await behind;
      }
    };
    await expect(send()).rejects.toThrow(/hashing worker exited/);
  });
});
