// VerifiedObjects keeps fixed-size manifest digests (an MD5 in hex, an S3 additional checksum
// in base64) as their bytes, not as a string per object (kept-objects.ts PACKED_KINDS): every
// digest must come back as exactly the string recorded, whatever its form, or the manifest's
// bytes would change.
import { describe, expect, it } from "vitest";
import { VerifiedObjects } from "../../src/fetch/kept-objects.ts";

const object = (etag = "") => ({ bytes: 10, etag });

describe("VerifiedObjects: digests come back as recorded", () => {
  const digests = [
    "md5:0123456789abcdef0123456789abcdef",
    "crc32:AAAAAA==",
    "crc32://///w==",
    "crc32c:3q2+7w==",
    "crc64nvme:AAAAAAAAAAA=",
    "crc64nvme:nk9XQ9QSDI0=",
    "sha1:2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
    "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hXuFU=",
    // Not in the one form that decodes and encodes back: kept as strings.
    "md5:0123456789ABCDEF0123456789ABCDEF",
    "md5:0123",
    "crc32:AAAAAB==",
    "crc32:AAAAAA",
    "crc32c:AAAA AA==",
    "crc64nvme:AAAAAAAAAAAAAAAA",
    "sha256:",
    "xxh64:AAAAAAAAAAA=",
    "crc32:AAAAAA==-3",
  ];

  it("each kind and each odd form, by index, after others were recorded and forgotten", () => {
    const verified = new VerifiedObjects(digests.length * 2);
    digests.forEach((digest, i) => {
      verified.record(2 * i, object(), digest, "checksum");
      verified.record(2 * i + 1, object(), `md5:${"f".repeat(32)}`, "md5");
    });
    digests.forEach((digest, i) => {
      expect(verified.digestOf(2 * i, object())).toBe(digest);
      expect(verified.digestOf(2 * i + 1, object())).toBe(`md5:${"f".repeat(32)}`);
    });
    // Recorded again with another digest (a kept object fetched again), and forgotten.
    verified.record(0, object(), "crc64nvme:AQIDBAUGBwg=", "checksum");
    expect(verified.digestOf(0, object())).toBe("crc64nvme:AQIDBAUGBwg=");
    verified.forget(0, object());
    expect(verified.has(0)).toBe(false);
    expect(verified.digestOf(0, object())).toBeUndefined();
    expect(verified.digestOf(2, object())).toBe(digests[1]);
    expect(verified.count).toBe(digests.length * 2 - 1);
  });

  it("an MD5 that is the listed ETag, none, and a packed one side by side", () => {
    const etag = "0123456789abcdef0123456789abcdef";
    const verified = new VerifiedObjects(3);
    verified.record(0, object(etag), `md5:${etag}`, "md5");
    verified.record(1, object(etag), undefined, "size-only");
    verified.record(2, object(etag), "md5:fedcba9876543210fedcba9876543210", "multipart-md5");
    expect(verified.digestOf(0, object(etag))).toBe(`md5:${etag}`);
    expect(verified.digestOf(1, object(etag))).toBeUndefined();
    expect(verified.digestOf(2, object(etag))).toBe("md5:fedcba9876543210fedcba9876543210");
    expect([0, 1, 2].map((i) => verified.methodOf(i))).toEqual([
      "md5",
      "size-only",
      "multipart-md5",
    ]);
  });
});

describe("VerifiedObjects: memory of digests kept as bytes", () => {
  it("a large folder with a few digests of a kind keeps them as strings, not an array for every object", () => {
    const objects = 400_000;
    const before = process.memoryUsage().arrayBuffers;
    const verified = new VerifiedObjects(objects);
    const etag = "0123456789abcdef0123456789abcdef";
    for (let i = 0; i < objects; i++) {
      const digest =
        i % 100_000 === 7 ? "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hXuFU=" : `md5:${etag}`;
      verified.record(i, object(etag), digest, "md5");
    }
    // Two bytes per object; a SHA-256 array would be 32 more (12.8 MB).
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(objects * 4);
    expect(verified.digestOf(100_007, object(etag))).toBe(
      "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hXuFU=",
    );
  });

  it("once many are, those kept as strings move into the array and come back the same", () => {
    const objects = 1000;
    const verified = new VerifiedObjects(objects);
    const digestOf = (i: number) =>
      `crc32c:${Buffer.from([i & 255, i >> 8, 1, 2]).toString("base64")}`;
    for (let i = 0; i < objects; i++) verified.record(i, object(), digestOf(i), "checksum");
    for (let i = 0; i < objects; i++) expect(verified.digestOf(i, object())).toBe(digestOf(i));
  });
});
