// The verification plan (src/fetch/verification.ts): which proof is used for an object, which
// part boundaries must be learned first, and how computed digests are compared.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import {
  checksumOf,
  compositeChecksum,
  type ObjectChecksum,
} from "../../src/fetch/checksum/index.ts";
import {
  checkDigests,
  compareDigests,
  createDigest,
  fileDigest,
  partsToLearn,
  planVerification,
} from "../../src/fetch/verification.ts";

const md5 = (data: Buffer) => createHash("md5").update(data).digest("hex");
const data = Buffer.from("the quick brown fox jumps over the lazy dog");
const fullCrc32: ObjectChecksum = {
  algorithm: "CRC32",
  type: "full-object",
  value: checksumOf("CRC32", data),
};
const halves = [
  { start: 0, end: 20 },
  { start: 20, end: data.length },
];

describe("planVerification", () => {
  it("prefers a full-object checksum to the ETag, and needs no part boundaries for it", () => {
    const source = { etag: md5(data), bytes: data.length, checksum: fullCrc32 };
    const plan = planVerification(source, undefined);
    expect(plan.method).toBe("checksum:crc32");
    expect(plan.spans).toEqual([{ start: 0, end: data.length }]);
    expect(partsToLearn({ ...source, etag: `${md5(data)}-7` })).toBeUndefined();
  });

  it("uses a composite checksum at the learned parts, else falls back to the ETag", () => {
    const composite = compositeChecksum("SHA256", [
      checksumOf("SHA256", data.subarray(0, 20)),
      checksumOf("SHA256", data.subarray(20)),
    ]);
    const source = {
      etag: "0123456789abcdef0123456789abcdef-2",
      bytes: data.length,
      checksum: composite,
    };
    expect(partsToLearn(source)).toBe(2);
    expect(planVerification(source, halves).method).toBe("checksum:sha256");
    expect(planVerification(source, undefined).method).toMatch(
      /^size-only \(the multipart part boundaries could not be learned; the SHA256 composite checksum needs them too\)$/,
    );
  });

  it("uses the ETag without checksums: md5, multipart-md5, and says why when it cannot", () => {
    expect(planVerification({ etag: md5(data), bytes: data.length }, undefined).method).toBe("md5");
    const multi = { etag: "0123456789abcdef0123456789abcdef-2", bytes: data.length };
    expect(partsToLearn(multi)).toBe(2);
    expect(planVerification(multi, halves).method).toBe("multipart-md5");
    const kms = planVerification(
      {
        etag: md5(data),
        bytes: data.length,
        encryption: "aws:kms",
        checksumRejected: ['the store\'s SHA1 checksum "x" is not base64'],
      },
      undefined,
    );
    expect(kms.method).toBe(
      'size-only (the object is encrypted with aws:kms, so its ETag is not an MD5; the store\'s SHA1 checksum "x" is not base64)',
    );
    expect(kms.algorithm).toBeUndefined();
  });
});

describe("compareDigests and fileDigest", () => {
  it("matches what was computed over the spans, and names what was found when not", () => {
    const plan = planVerification(
      { etag: md5(data), bytes: data.length, checksum: fullCrc32 },
      undefined,
    );
    const right = createDigest("CRC32");
    right.update(data);
    const digest = right.digest();
    expect(compareDigests(plan, [digest])).toEqual({
      matches: true,
      found: digest.toString("base64"),
    });
    expect(fileDigest(plan, [digest])).toBe(`crc32:${digest.toString("base64")}`);
    const wrong = Buffer.from(digest);
    wrong[0] = (wrong[0] as number) ^ 1;
    expect(compareDigests(plan, [wrong])).toEqual({
      matches: false,
      found: wrong.toString("base64"),
    });
  });

  it("an empty object's digest is that of no bytes", () => {
    const empty = Buffer.alloc(0);
    const plan = planVerification({ etag: md5(empty), bytes: 0 }, undefined);
    expect(compareDigests(plan, []).matches).toBe(true);
    expect(fileDigest(plan, [])).toBe(`md5:${md5(empty)}`);
    const crc = planVerification(
      {
        etag: md5(empty),
        bytes: 0,
        checksum: {
          algorithm: "CRC64NVME",
          type: "full-object",
          value: checksumOf("CRC64NVME", empty),
        },
      },
      undefined,
    );
    expect(compareDigests(crc, []).matches).toBe(true);
  });
});

describe("checkDigests", () => {
  const caught = (run: () => void): DsfetchError => {
    try {
      run();
    } catch (error) {
      if (error instanceof DsfetchError) return error;
    }
    throw new Error("no DsfetchError");
  };
  const wrong = [createHash("md5").update("other bytes").digest()];

  it("an ETag mismatch says that a store's ETag may not be an MD5 at all (interop review, 2026-12-06)", () => {
    const plan = planVerification({ etag: md5(data), bytes: data.length }, undefined);
    const error = caught(() => checkDigests(plan, wrong, "d", "s3://b/k"));
    expect(error.code).toBe("INTEGRITY");
    expect(error.hint).toContain("the store's ETag is not the MD5 of the object's bytes");
  });

  it("a checksum mismatch does not (a checksum is the bytes' own)", () => {
    const plan = planVerification(
      { etag: md5(data), bytes: data.length, checksum: fullCrc32 },
      undefined,
    );
    const error = caught(() => checkDigests(plan, [Buffer.from([0, 0, 0, 0])], "d", "s3://b/k"));
    expect(error.code).toBe("INTEGRITY");
    expect(error.hint).not.toContain("MD5");
  });
});
