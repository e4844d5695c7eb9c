// CRC combination: crc(A‖B) from crc(A), crc(B) and |B|, for random splits, empty pieces,
// pieces longer than 2^32 bits (directly) and 2^32 bytes (by associativity), and CrcRanges,
// which folds ranges recorded in any order into whole-object and per-part CRCs.
import { randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { describe, expect, it } from "vitest";
import { combineCrc32 } from "../../src/fetch/checksum/combine.ts";
import {
  type CrcAlgorithm,
  CrcRanges,
  checksumOf,
  combineCrc,
  createChecksum,
} from "../../src/fetch/checksum/index.ts";

const CRCS: readonly CrcAlgorithm[] = ["CRC32", "CRC32C", "CRC64NVME"];

/** A small seeded PRNG (mulberry32), so a failing split can be reproduced. */
function prng(seed: number): (below: number) => number {
  let s = seed >>> 0;
  return (below) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * below);
  };
}

describe("combineCrc", () => {
  it.each(CRCS)("%s: combine(crc(A), crc(B), |B|) = crc(A‖B) for random splits", (algorithm) => {
    const data = randomBytes(70_001);
    const whole = checksumOf(algorithm, data);
    const random = prng(1);
    const splits = [0, 1, 7, 8, data.length - 1, data.length];
    for (let i = 0; i < 40; i++) splits.push(random(data.length + 1));
    for (const split of splits) {
      const a = checksumOf(algorithm, data.subarray(0, split));
      const b = checksumOf(algorithm, data.subarray(split));
      expect(
        combineCrc(algorithm, a, b, data.length - split).toString("hex"),
        `split ${split}`,
      ).toBe(whole.toString("hex"));
    }
  });

  it.each(CRCS)("%s: folds many pieces, empty ones included, left to right", (algorithm) => {
    const data = randomBytes(50_000);
    const random = prng(2);
    const cuts = [0, 0, 10, 10, 10, data.length, data.length];
    for (let i = 0; i < 25; i++) cuts.push(random(data.length + 1));
    cuts.sort((x, y) => x - y);
    let crc = checksumOf(algorithm, Buffer.alloc(0));
    for (let i = 1; i < cuts.length; i++) {
      const piece = data.subarray(cuts[i - 1], cuts[i]);
      crc = combineCrc(algorithm, crc, checksumOf(algorithm, piece), piece.length);
    }
    expect(crc.toString("hex")).toBe(checksumOf(algorithm, data).toString("hex"));
  });

  it.each(CRCS)("%s: the empty piece is the identity on either side", (algorithm) => {
    const a = checksumOf(algorithm, randomBytes(99));
    const empty = checksumOf(algorithm, Buffer.alloc(0));
    expect(combineCrc(algorithm, a, empty, 0).equals(a)).toBe(true);
    expect(combineCrc(algorithm, empty, a, 99).equals(a)).toBe(true);
  });

  it.each(CRCS)(
    "%s: a second piece of 513 MiB + 5 bytes (more than 2^32 bits) combines exactly",
    (algorithm) => {
      const block = randomBytes(1024 * 1024);
      const tail = randomBytes(5);
      const a = randomBytes(1000);
      const bChecksum = createChecksum(algorithm);
      const abChecksum = createChecksum(algorithm);
      abChecksum.update(a);
      for (let i = 0; i < 513; i++) {
        bChecksum.update(block);
        abChecksum.update(block);
      }
      bChecksum.update(tail);
      abChecksum.update(tail);
      const lengthB = 513 * block.length + tail.length;
      expect(lengthB * 8).toBeGreaterThan(2 ** 32);
      expect(
        combineCrc(algorithm, checksumOf(algorithm, a), bChecksum.digest(), lengthB).toString(
          "hex",
        ),
      ).toBe(abChecksum.digest().toString("hex"));
    },
  );

  it.each(CRCS)("%s: is associative for lengths past 2^32 bytes, up to 2^53 - 1", (algorithm) => {
    // combine(combine(a, b, |B|), c, |C|) = combine(a, combine(b, c, |C|), |B| + |C|): any
    // length arithmetic that wraps at 32 bits (or loses bits) breaks this.
    const size = algorithm === "CRC64NVME" ? 8 : 4;
    const lengths: [number, number][] = [
      [3_000_000_000, 2_000_000_000],
      [2 ** 32 - 1, 1],
      [2 ** 32, 2 ** 32],
      [2 ** 40 + 7, 2 ** 41 + 13],
      [2 ** 52, 2 ** 52 - 1],
      [1, 2 ** 53 - 2],
    ];
    for (const [lengthB, lengthC] of lengths) {
      const [a, b, c] = [randomBytes(size), randomBytes(size), randomBytes(size)];
      const left = combineCrc(algorithm, combineCrc(algorithm, a, b, lengthB), c, lengthC);
      const right = combineCrc(
        algorithm,
        a,
        combineCrc(algorithm, b, c, lengthC),
        lengthB + lengthC,
      );
      expect(left.toString("hex"), `${lengthB} + ${lengthC}`).toBe(right.toString("hex"));
    }
    // And the shift really depends on the high bits of the length.
    const a = randomBytes(size);
    const zero = Buffer.alloc(size);
    expect(
      combineCrc(algorithm, a, zero, 2 ** 40 + 5).equals(combineCrc(algorithm, a, zero, 5)),
    ).toBe(false);
  });

  it("refuses wrong digest sizes and lengths", () => {
    const four = Buffer.alloc(4);
    expect(() => combineCrc("CRC32", four, Buffer.alloc(8), 1)).toThrow(RangeError);
    expect(() => combineCrc("CRC64NVME", four, four, 1)).toThrow(RangeError);
    expect(() => combineCrc("CRC32C", four, four, -1)).toThrow(RangeError);
    expect(() => combineCrc("CRC32C", four, four, 1.5)).toThrow(RangeError);
    expect(() => combineCrc("CRC32C", four, four, 2 ** 53)).toThrow(RangeError);
    expect(() => combineCrc("SHA1" as CrcAlgorithm, four, four, 1)).toThrow(RangeError);
  });
});

describe("CrcRanges", () => {
  /** Splits [0, size) into ranges of `rangeSize` (the last shorter). */
  function ranges(size: number, rangeSize: number): { start: number; end: number }[] {
    const out: { start: number; end: number }[] = [];
    for (let start = 0; start < size; start += rangeSize) {
      out.push({ start, end: Math.min(size, start + rangeSize) });
    }
    return out;
  }

  function shuffle<T>(items: T[], random: (below: number) => number): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = random(i + 1);
      [items[i], items[j]] = [items[j] as T, items[i] as T];
    }
    return items;
  }

  it.each(CRCS)(
    "%s: ranges hashed out of order, split at part boundaries, give every part and the whole",
    (algorithm) => {
      const data = randomBytes(300_007);
      const partSize = 65_536;
      const parts = ranges(data.length, partSize);
      const crcs = new CrcRanges(
        algorithm,
        parts.map((p) => p.start),
      );
      const random = prng(3);
      // 50,001-byte ranges straddle the 64 KiB parts; each arrives in uneven chunks.
      for (const range of shuffle(ranges(data.length, 50_001), random)) {
        const hasher = crcs.hasher(range.start);
        let at = range.start;
        while (at < range.end) {
          const next = Math.min(range.end, at + 1 + random(20_000));
          hasher.update(data.subarray(at, next));
          at = next;
        }
        hasher.end();
      }
      expect(crcs.digest(0, data.length).toString("hex")).toBe(
        checksumOf(algorithm, data).toString("hex"),
      );
      for (const part of parts) {
        expect(crcs.digest(part.start, part.end).toString("hex"), `part at ${part.start}`).toBe(
          checksumOf(algorithm, data.subarray(part.start, part.end)).toString("hex"),
        );
      }
    },
  );

  it("takes CRCs computed elsewhere, in any order, and an empty object", () => {
    const data = randomBytes(1000);
    // A span other than the whole must start at a cut: pieces merge within a part.
    const crcs = new CrcRanges("CRC32C", [250]);
    crcs.add(600, 400, checksumOf("CRC32C", data.subarray(600)));
    crcs.add(0, 250, checksumOf("CRC32C", data.subarray(0, 250)));
    crcs.add(250, 350, checksumOf("CRC32C", data.subarray(250, 600)));
    expect(crcs.digest(0, 1000).equals(checksumOf("CRC32C", data))).toBe(true);
    expect(crcs.digest(250, 1000).equals(checksumOf("CRC32C", data.subarray(250)))).toBe(true);
    expect(new CrcRanges("CRC64NVME").digest(0, 0).toString("hex")).toBe("0000000000000000");
  });

  it("refuses gaps, overlaps, spans that cut a piece, and pieces across a cut", () => {
    const four = Buffer.alloc(4);
    const gap = new CrcRanges("CRC32");
    gap.add(0, 10, four);
    gap.add(11, 10, four);
    expect(() => gap.digest(0, 21)).toThrow(/do not tile/);
    expect(() => gap.digest(0, 10)).not.toThrow();

    const overlap = new CrcRanges("CRC32");
    overlap.add(0, 10, four);
    overlap.add(5, 10, four);
    expect(() => overlap.digest(0, 15)).toThrow(/do not tile/);

    const short = new CrcRanges("CRC32");
    short.add(0, 10, four);
    expect(() => short.digest(0, 11)).toThrow(/cover 0-10/);
    expect(() => short.digest(5, 10)).toThrow(/do not tile/);
    expect(() => short.digest(0, 5)).toThrow(/do not tile/);

    const cut = new CrcRanges("CRC32", [8]);
    expect(() => cut.add(4, 8, four)).toThrow(/spans the cut/);
    expect(() => cut.add(0, 8, Buffer.alloc(8))).toThrow(RangeError);
    expect(() => cut.add(-1, 8, four)).toThrow(RangeError);
  });

  // Review, 2026-12-06: downloadObject records one piece per 256 KiB write batch; kept
  // apart, a 1 TiB object held ~4M of them, and each part's digest() scanned them all.
  it.each(CRCS)(
    "%s: thousands of small contiguous pieces, added out of order, fold into one per part",
    (algorithm) => {
      const data = randomBytes(3 * 1024 * 1024 + 999);
      // Parts of an odd size, so that pieces straddle them (split by the hashers).
      const parts = ranges(data.length, 262_147);
      const crcs = new CrcRanges(
        algorithm,
        parts.map((p) => p.start),
      );
      const random = prng(7);
      // As downloadObject records them: 8 ranges in flight, each taken in order, each
      // recording small batches in turn; some with add() (a CRC computed elsewhere), some
      // through a hasher.
      const queue = ranges(data.length, 65_536 + 13);
      let inFlight: { at: number; end: number }[] = [];
      let most = 0;
      let recorded = 0;
      while (queue.length > 0 || inFlight.length > 0) {
        while (inFlight.length < 8 && queue.length > 0) {
          const next = queue.shift() as { start: number; end: number };
          inFlight.push({ at: next.start, end: next.end });
        }
        const range = inFlight[random(inFlight.length)] as { at: number; end: number };
        const to = Math.min(range.end, range.at + 1 + random(1500));
        if (recorded % 2 === 0) {
          // add() takes no piece across a cut: split there, as the hashers do.
          for (let from = range.at; from < to; ) {
            const cut = parts.find((p) => p.start > from)?.start ?? to;
            const until = Math.min(to, cut);
            crcs.add(from, until - from, checksumOf(algorithm, data.subarray(from, until)));
            from = until;
          }
        } else {
          const hasher = crcs.hasher(range.at);
          hasher.update(data.subarray(range.at, to));
          hasher.end();
        }
        recorded += 1;
        range.at = to;
        inFlight = inFlight.filter((r) => r.at < r.end);
        most = Math.max(most, crcs.pieceCount);
      }
      expect(recorded).toBeGreaterThan(4000);
      // One piece per part in the end; while ranges land, about one per range in flight more.
      expect(crcs.pieceCount).toBe(parts.length);
      expect(most).toBeLessThanOrEqual(parts.length + 8);
      expect(crcs.digest(0, data.length).toString("hex")).toBe(
        checksumOf(algorithm, data).toString("hex"),
      );
      for (const part of parts) {
        expect(crcs.digest(part.start, part.end).toString("hex"), `part at ${part.start}`).toBe(
          checksumOf(algorithm, data.subarray(part.start, part.end)).toString("hex"),
        );
      }

      // Fully shuffled, and no cuts: one piece for the whole object.
      const whole = new CrcRanges(algorithm);
      const pieces = shuffle(ranges(data.length, 997), random);
      for (const piece of pieces) {
        whole.add(
          piece.start,
          piece.end - piece.start,
          checksumOf(algorithm, data.subarray(piece.start, piece.end)),
        );
      }
      expect(whole.pieceCount).toBe(1);
      expect(whole.digest(0, data.length).toString("hex")).toBe(
        checksumOf(algorithm, data).toString("hex"),
      );
      // A span within merged pieces is no longer there to give.
      expect(() => whole.digest(997, data.length)).toThrow(/do not tile/);
    },
  );

  it("a hasher takes no bytes after end()", () => {
    const hasher = new CrcRanges("CRC32").hasher(0);
    hasher.update(Buffer.from("abc"));
    hasher.end();
    expect(() => hasher.update(Buffer.from("d"))).toThrow(/after end/);
  });
});

describe("combineCrc32 (numbers, the tar extraction's folding of its files' CRCs)", () => {
  it("combineCrc32(crc(A), crc(B), |B|) = zlib's crc32(A‖B), the same length again (cached) too", () => {
    const random = prng(7);
    for (let i = 0; i < 300; i++) {
      const a = randomBytes(random(5000));
      // Lengths repeat (1-in-3 from a small set): the cached operators must stay right.
      const b = randomBytes(i % 3 === 0 ? ([0, 1, 512, 16_384][i % 4] ?? 0) : random(70_000));
      expect(combineCrc32(crc32(a), crc32(b), b.length), `|A| ${a.length}, |B| ${b.length}`).toBe(
        crc32(Buffer.concat([a, b])),
      );
    }
    // A long B: 2^26 zero bytes after random ones.
    const zeros = Buffer.alloc(1 << 26);
    const head = randomBytes(100);
    expect(combineCrc32(crc32(head), crc32(zeros), zeros.length)).toBe(
      crc32(Buffer.concat([head, zeros])),
    );
  });
});
