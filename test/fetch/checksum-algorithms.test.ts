// The five S3 checksum algorithms: published check values, bit-by-bit reference CRCs on random
// data, and incremental updates that split the input anywhere (unaligned views included).
import { createHash, randomBytes } from "node:crypto";
import { crc32 as zlibCrc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { CRC32_POLY, CRC32C_POLY, crc32c } from "../../src/fetch/checksum/algorithms.ts";
import { crc32Tables, crc32Update } from "../../src/fetch/checksum/crc32-table.ts";
import {
  CHECKSUM_ALGORITHMS,
  type ChecksumAlgorithm,
  checksumOf,
  createChecksum,
  DIGEST_BYTES,
} from "../../src/fetch/checksum/index.ts";

/** Bit at a time, straight from the definition: the slow reference the fast loops must match. */
function referenceCrc32(poly: number, data: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of data) {
    c ^= byte;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
  }
  return ~c >>> 0;
}

function referenceCrc64Nvme(data: Uint8Array): bigint {
  const mask = 0xffff_ffff_ffff_ffffn;
  let c = mask;
  for (const byte of data) {
    c ^= BigInt(byte);
    for (let bit = 0; bit < 8; bit++) c = c & 1n ? (c >> 1n) ^ 0x9a6c9329ac4bc9b5n : c >> 1n;
  }
  return c ^ mask;
}

function reference(algorithm: ChecksumAlgorithm, data: Uint8Array): string {
  switch (algorithm) {
    case "CRC32":
      return referenceCrc32(0xedb88320, data).toString(16).padStart(8, "0");
    case "CRC32C":
      return referenceCrc32(0x82f63b78, data).toString(16).padStart(8, "0");
    case "CRC64NVME":
      return referenceCrc64Nvme(data).toString(16).padStart(16, "0");
    case "SHA1":
      return createHash("sha1").update(data).digest("hex");
    case "SHA256":
      return createHash("sha256").update(data).digest("hex");
  }
}

const hex = (algorithm: ChecksumAlgorithm, data: Uint8Array) =>
  checksumOf(algorithm, data).toString("hex");

describe("check values", () => {
  it('matches the published values for "123456789"', () => {
    // CRC catalogue (reveng) check values; FIPS 180 for the SHAs.
    const check = Buffer.from("123456789");
    expect(hex("CRC32", check)).toBe("cbf43926");
    expect(hex("CRC32C", check)).toBe("e3069283");
    expect(hex("CRC64NVME", check)).toBe("ae8b14860a799888");
    expect(hex("SHA1", check)).toBe("f7c3bc1d808e04732adf679965ccc34ca7ae3441");
    expect(hex("SHA256", check)).toBe(
      "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
    );
  });

  it("matches the iSCSI CRC32C vectors of RFC 3720 (B.4)", () => {
    const ascending = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    expect(hex("CRC32C", Buffer.alloc(32, 0x00))).toBe("8a9136aa");
    expect(hex("CRC32C", Buffer.alloc(32, 0xff))).toBe("62a8ab43");
    expect(hex("CRC32C", ascending)).toBe("46dd794e");
    expect(hex("CRC32C", Buffer.from(ascending).reverse())).toBe("113fdb5c");
  });

  it("gives the digest of no bytes when nothing is hashed", () => {
    expect(hex("CRC32", Buffer.alloc(0))).toBe("00000000");
    expect(hex("CRC32C", Buffer.alloc(0))).toBe("00000000");
    expect(hex("CRC64NVME", Buffer.alloc(0))).toBe("0000000000000000");
    expect(hex("SHA1", Buffer.alloc(0))).toBe("da39a3ee5e6b4b0d3255bfef95601890afd80709");
    expect(createChecksum("SHA256").digest().toString("hex")).toBe(
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
  });

  it("encodes digests big-endian, as S3 base64-encodes them", () => {
    // "123456789" → CRC64NVME ae8b14860a799888 → base64 of those 8 bytes in that order.
    expect(checksumOf("CRC64NVME", Buffer.from("123456789")).toString("base64")).toBe(
      "rosUhgp5mIg=",
    );
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      expect(checksumOf(algorithm, Buffer.from("x")).length).toBe(DIGEST_BYTES[algorithm]);
    }
  });
});

describe("against the bit-by-bit reference", () => {
  it.each(CHECKSUM_ALGORITHMS)(
    "%s: every length 0-70 at every alignment, and a few larger ones",
    (algorithm) => {
      // Short inputs at odd offsets end the aligned word loop before it starts.
      const data = randomBytes(5008);
      for (let offset = 0; offset < 8; offset++) {
        for (const length of [...Array.from({ length: 71 }, (_, i) => i), 255, 256, 4097, 5000]) {
          const bytes = data.subarray(offset, offset + length);
          expect(hex(algorithm, bytes), `offset ${offset}, length ${length}`).toBe(
            reference(algorithm, bytes),
          );
        }
      }
    },
  );

  it.each(CHECKSUM_ALGORITHMS)(
    "%s: unaligned views and arbitrary update splits give the one-shot digest",
    (algorithm) => {
      const backing = randomBytes(200_003);
      for (const offset of [0, 1, 2, 3, 5, 7]) {
        const data = backing.subarray(offset, offset + 150_000 + offset);
        const whole = hex(algorithm, data);
        const checksum = createChecksum(algorithm);
        let at = 0;
        for (const size of [0, 1, 3, 17, 4096, 65_537, 0, 7]) {
          checksum.update(data.subarray(at, at + size));
          at += size;
        }
        checksum.update(data.subarray(at));
        expect(checksum.digest().toString("hex"), `offset ${offset}`).toBe(whole);
      }
      // The reference is slow: compare it on a smaller unaligned slice only.
      const slice = backing.subarray(3, 20_000);
      expect(hex(algorithm, slice)).toBe(reference(algorithm, slice));
    },
  );

  it("hashes a Uint8Array view that is not a Buffer", () => {
    const bytes = randomBytes(1000);
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset + 1, 999);
    for (const algorithm of CHECKSUM_ALGORITHMS) {
      expect(hex(algorithm, view)).toBe(reference(algorithm, view));
    }
  });
});

describe("the table loop", () => {
  it("is the fallback CRC32 on a Node without zlib.crc32: same results as zlib", () => {
    const table = crc32Tables(CRC32_POLY);
    const data = randomBytes(100_001);
    expect(crc32Update(table, 0, data)).toBe(zlibCrc32(data));
    const head = crc32Update(table, 0, data.subarray(0, 333));
    expect(crc32Update(table, head, data.subarray(333))).toBe(zlibCrc32(data));
  });

  it("continues from a finished CRC like zlib's crc32(data, value)", () => {
    const data = randomBytes(10_000);
    const head = crc32c(data.subarray(0, 4321));
    expect(crc32c(data.subarray(4321), head)).toBe(crc32c(data));
    expect(crc32c(data)).toBe(referenceCrc32(CRC32C_POLY, data));
  });
});
