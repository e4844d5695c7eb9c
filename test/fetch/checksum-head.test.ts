// What the store reports with ChecksumMode ENABLED: valid values parse, hostile ones are
// rejected with a reason and never throw, the preferred checksum is chosen, and the
// COMPOSITE rule and its `<base64>-<N>` form.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  checksumMatches,
  checksumMethod,
  checksumOf,
  chooseChecksum,
  compositeChecksum,
  DIGEST_BYTES,
  formatChecksum,
  parseChecksum,
} from "../../src/fetch/checksum/index.ts";

const b64 = (algorithm: ChecksumAlgorithm, fill = 7) =>
  Buffer.alloc(DIGEST_BYTES[algorithm], fill).toString("base64");

describe("parseChecksum: valid values", () => {
  it.each(CHECKSUM_ALGORITHMS)("%s full-object, with or without ChecksumType", (algorithm) => {
    const value = checksumOf(algorithm, Buffer.from("hello")).toString("base64");
    for (const type of ["FULL_OBJECT", undefined]) {
      const parsed = parseChecksum(algorithm, value, type);
      expect(parsed.reason).toBeUndefined();
      expect(parsed.checksum).toEqual({
        algorithm,
        type: "full-object",
        value: checksumOf(algorithm, Buffer.from("hello")),
      });
      if (parsed.checksum) expect(formatChecksum(parsed.checksum)).toBe(value);
    }
  });

  it.each(CHECKSUM_ALGORITHMS.filter((a) => a !== "CRC64NVME"))(
    "%s composite: `-N` with or without ChecksumType; without `-N` the ETag's count",
    (algorithm) => {
      const value = `${b64(algorithm)}-3`;
      for (const type of ["COMPOSITE", undefined]) {
        const parsed = parseChecksum(algorithm, value, type, 3);
        expect(parsed.checksum).toEqual({
          algorithm,
          type: "composite",
          value: Buffer.alloc(DIGEST_BYTES[algorithm], 7),
          parts: 3,
        });
        if (parsed.checksum) expect(formatChecksum(parsed.checksum)).toBe(value);
      }
      expect(parseChecksum(algorithm, b64(algorithm), "COMPOSITE", 12).checksum?.parts).toBe(12);
      const unknownCount = parseChecksum(algorithm, b64(algorithm), "COMPOSITE").checksum;
      expect(unknownCount?.type).toBe("composite");
      expect(unknownCount && "parts" in unknownCount).toBe(false);
      expect(parseChecksum(algorithm, `${b64(algorithm)}-10000`).checksum?.parts).toBe(10_000);
    },
  );

  it("a full-object CRC on a multipart object is fine (FULL_OBJECT multipart uploads)", () => {
    expect(parseChecksum("CRC32C", b64("CRC32C"), "FULL_OBJECT", 4).checksum?.type).toBe(
      "full-object",
    );
    expect(parseChecksum("CRC64NVME", b64("CRC64NVME"), undefined, 4).checksum?.type).toBe(
      "full-object",
    );
  });
});

describe("parseChecksum: hostile values", () => {
  const cases: [string, ChecksumAlgorithm, unknown, unknown, number | undefined, RegExp][] = [
    ["empty", "CRC32", "", undefined, undefined, /is not base64/],
    ["too short", "CRC32", "AAAA", undefined, undefined, /4-byte digest/],
    ["too long for the algorithm", "CRC32", b64("SHA1"), undefined, undefined, /4-byte/],
    ["a CRC32 value given as SHA256", "SHA256", b64("CRC32"), undefined, undefined, /32-byte/],
    ["padding missing", "CRC32", "AAAAAA", undefined, undefined, /4-byte digest/],
    ["stray bits in the last character", "CRC32", "AAAAAB==", undefined, undefined, /4-byte/],
    ["base64url alphabet", "CRC64NVME", "____________", undefined, undefined, /not base64/],
    ["leading space", "CRC32", ` ${b64("CRC32")}`, undefined, undefined, /not base64/],
    ["trailing newline", "CRC32", `${b64("CRC32")}\n`, undefined, undefined, /not base64/],
    ["hex instead of base64", "CRC32", "cbf43926", undefined, undefined, /4-byte digest/],
    ["zero parts", "CRC32", `${b64("CRC32")}-0`, undefined, undefined, /not base64/],
    ["leading zero", "CRC32", `${b64("CRC32")}-03`, undefined, undefined, /not base64/],
    ["dash only", "CRC32", `${b64("CRC32")}-`, undefined, undefined, /not base64/],
    ["two counts", "CRC32", `${b64("CRC32")}-3-4`, undefined, undefined, /not base64/],
    ["negative count", "CRC32", `${b64("CRC32")}--3`, undefined, undefined, /not base64/],
    ["too many parts", "CRC32", `${b64("CRC32")}-10001`, undefined, undefined, /at most 10000/],
    ["huge count", "SHA256", `${b64("SHA256")}-999999`, undefined, undefined, /not base64/],
    ["a megabyte", "SHA256", "A".repeat(1 << 20), undefined, undefined, /too long/],
    ["not a string", "CRC32", 12345, undefined, undefined, /not a string/],
    ["an object", "CRC32", { toString: () => b64("CRC32") }, undefined, undefined, /string/],
    ["unknown ChecksumType", "CRC32", b64("CRC32"), "full_object", undefined, /unknown/],
    ["empty ChecksumType", "CRC32", b64("CRC32"), "", undefined, /unknown ChecksumType/],
    ["ChecksumType not a string", "CRC32", b64("CRC32"), 1, undefined, /number/],
    ["FULL_OBJECT with a count", "CRC32", `${b64("CRC32")}-2`, "FULL_OBJECT", undefined, /FULL/],
    ["CRC64NVME composite", "CRC64NVME", `${b64("CRC64NVME")}-2`, undefined, undefined, /CRC64/],
    ["CRC64NVME COMPOSITE", "CRC64NVME", b64("CRC64NVME"), "COMPOSITE", undefined, /CRC64NVME/],
    ["count disagrees with ETag", "SHA1", `${b64("SHA1")}-3`, "COMPOSITE", 4, /ETag counts 4/],
    ["full-object SHA256 on multipart", "SHA256", b64("SHA256"), undefined, 2, /only as COMP/],
    ["FULL_OBJECT SHA1 on multipart", "SHA1", b64("SHA1"), "FULL_OBJECT", 2, /only as COMP/],
  ];

  it.each(cases)("%s: rejected with a reason", (_name, algorithm, value, type, parts, reason) => {
    const parsed = parseChecksum(algorithm, value, type, parts);
    expect(parsed.checksum).toBeUndefined();
    expect(parsed.reason).toMatch(reason);
    expect(parsed.reason).toMatch(new RegExp(`^the store's ${algorithm} checksum `));
    // Messages stay short whatever the store sent.
    expect(parsed.reason?.length).toBeLessThan(200);
  });

  it("never throws on random input, and whatever it accepts is canonical", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\u00e9";
    const noise = randomBytes(2_000_000);
    let next = 0;
    const byte = () => noise[next++ % noise.length] ?? 0;
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const algorithm = CHECKSUM_ALGORITHMS[i % CHECKSUM_ALGORITHMS.length] as ChecksumAlgorithm;
      // Half the time start from a valid value and damage it, so parsing gets deep.
      let value: string;
      if (i % 2 === 0) {
        value = Array.from({ length: byte() % 80 }, () => alphabet[byte() % alphabet.length]).join(
          "",
        );
      } else {
        const chars = [...`${randomBytes(DIGEST_BYTES[algorithm]).toString("base64")}-3`];
        const at = byte() % (chars.length + 1);
        chars.splice(at, i % 3, ...(i % 5 === 0 ? [] : [alphabet[i % alphabet.length] ?? ""]));
        value = chars.join("");
      }
      const type = [undefined, "COMPOSITE", "FULL_OBJECT", "junk"][i % 4];
      const parsed = parseChecksum(algorithm, value, type);
      if (parsed.checksum !== undefined) {
        accepted++;
        expect(formatChecksum(parsed.checksum)).toBe(value);
        expect(parsed.checksum.value.length).toBe(DIGEST_BYTES[algorithm]);
      } else {
        expect(parsed.reason).toEqual(expect.any(String));
      }
    }
    expect(accepted).toBeGreaterThan(0);
  });
});

describe("chooseChecksum", () => {
  it("says nothing when the store reports no checksum", () => {
    expect(chooseChecksum({})).toEqual({ checksum: undefined, rejected: [] });
    expect(chooseChecksum({ ChecksumType: "FULL_OBJECT" })).toEqual({
      checksum: undefined,
      rejected: [],
    });
  });

  it("prefers full-object to composite, then CRC32, CRC32C, CRC64NVME, SHA1, SHA256", () => {
    const all = {
      ChecksumCRC32: b64("CRC32"),
      ChecksumCRC32C: b64("CRC32C"),
      ChecksumCRC64NVME: b64("CRC64NVME"),
      ChecksumSHA1: b64("SHA1"),
      ChecksumSHA256: b64("SHA256"),
    };
    expect(chooseChecksum(all).checksum?.algorithm).toBe("CRC32");
    expect(chooseChecksum({ ...all, ChecksumCRC32: undefined }).checksum?.algorithm).toBe("CRC32C");
    const { ChecksumSHA1, ChecksumSHA256, ChecksumCRC64NVME } = all;
    expect(chooseChecksum({ ChecksumSHA1, ChecksumSHA256, ChecksumCRC64NVME }).checksum).toEqual({
      algorithm: "CRC64NVME",
      type: "full-object",
      value: Buffer.alloc(8, 7),
    });
    expect(chooseChecksum({ ChecksumSHA256, ChecksumSHA1 }).checksum?.algorithm).toBe("SHA1");
    // A composite CRC32 loses to a full-object CRC64NVME (no part boundaries needed).
    const mixed = chooseChecksum({
      ChecksumCRC32: `${b64("CRC32")}-2`,
      ChecksumCRC64NVME: b64("CRC64NVME"),
    });
    expect(mixed.checksum?.algorithm).toBe("CRC64NVME");
    expect(mixed.rejected).toEqual([]);
  });

  it("uses a valid checksum when another is malformed, and says why the other went unused", () => {
    const choice = chooseChecksum({
      ChecksumCRC32: "not base64!",
      ChecksumSHA256: `${b64("SHA256")}-2`,
      ChecksumType: "COMPOSITE",
    });
    expect(choice.checksum).toEqual({
      algorithm: "SHA256",
      type: "composite",
      value: Buffer.alloc(32, 7),
      parts: 2,
    });
    expect(choice.rejected).toEqual([
      `the store's CRC32 checksum "not base64!" is not base64, optionally followed by -<part count>`,
    ]);
  });

  it("reports algorithms it does not compute, and ignores the SDK's other fields", () => {
    const head = {
      ChecksumSHA512: "x",
      ChecksumXXHASH64: "y",
      ChecksumMD5: undefined,
      ChecksumType: "FULL_OBJECT",
      $metadata: { httpStatusCode: 200 },
      ETag: '"abc"',
    };
    expect(chooseChecksum(head)).toEqual({
      checksum: undefined,
      rejected: [
        "the store's SHA512 checksum is not one dsfetch computes",
        "the store's XXHASH64 checksum is not one dsfetch computes",
      ],
    });
  });

  it("checks composite counts against the ETag's", () => {
    const head = { ChecksumCRC32C: `${b64("CRC32C")}-5`, ChecksumType: "COMPOSITE" };
    expect(chooseChecksum(head, 5).checksum?.parts).toBe(5);
    expect(chooseChecksum(head, 6)).toEqual({
      checksum: undefined,
      rejected: [
        `the store's CRC32C checksum "${b64("CRC32C")}-5" counts 5 parts but the ETag counts 6`,
      ],
    });
  });
});

describe("compositeChecksum", () => {
  it("is the checksum of the concatenated binary part checksums, with the part count", () => {
    const parts = [randomBytes(100), randomBytes(1), randomBytes(5000)];
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      const digests = parts.map((part) => checksumOf(algorithm, part));
      const composite = compositeChecksum(algorithm, digests);
      expect(composite).toEqual({
        algorithm,
        type: "composite",
        value: checksumOf(algorithm, Buffer.concat(digests)),
        parts: 3,
      });
      // Not the checksum of the data, nor of the base64 texts.
      expect(composite.value.equals(checksumOf(algorithm, Buffer.concat(parts)))).toBe(false);
      const texts = Buffer.from(digests.map((d) => d.toString("base64")).join(""));
      expect(composite.value.equals(checksumOf(algorithm, texts))).toBe(false);
      expect(formatChecksum(composite)).toBe(`${composite.value.toString("base64")}-3`);
    }
    // Spelled out once for SHA256 with node:crypto alone.
    const sha = parts.map((part) => createHash("sha256").update(part).digest());
    const outer = createHash("sha256").update(Buffer.concat(sha)).digest("base64");
    expect(formatChecksum(compositeChecksum("SHA256", sha))).toBe(`${outer}-3`);
  });

  it("refuses part digests of the wrong size", () => {
    expect(() => compositeChecksum("SHA1", [Buffer.alloc(20), Buffer.alloc(32)])).toThrow(
      /part 2 has a 32-byte digest/,
    );
  });
});

describe("checksumMatches and checksumMethod", () => {
  it("needs the same algorithm, kind, digest and (when given) part count", () => {
    const value = Buffer.alloc(4, 1);
    const expected = { algorithm: "CRC32C" as const, type: "composite" as const, value, parts: 3 };
    expect(checksumMatches(expected, { ...expected, value: Buffer.alloc(4, 1) })).toBe(true);
    expect(checksumMatches(expected, { ...expected, value: Buffer.alloc(4, 2) })).toBe(false);
    expect(checksumMatches(expected, { ...expected, parts: 4 })).toBe(false);
    expect(checksumMatches(expected, { ...expected, algorithm: "CRC32" })).toBe(false);
    expect(checksumMatches(expected, { ...expected, type: "full-object" })).toBe(false);
    const { parts: _, ...withoutCount } = expected;
    expect(checksumMatches(withoutCount, expected)).toBe(true);
    expect(checksumMethod(expected)).toBe("checksum:crc32c");
  });
});
