// Md5Lanes: MD5 of many parts in SIMD lanes gives exactly OpenSSL's digest of every part,
// whatever the part sizes (padding edges 55/56/63/64 bytes, empty parts) and however the
// available bytes advance.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { LANES, Md5Lanes, useMd5Lanes } from "../../src/fetch/md5-lanes.ts";
import { md5LanesModule } from "../../src/fetch/md5-lanes-kernel.ts";
import type { ByteSpan } from "../../src/fetch/ordered-hasher.ts";

function spansOf(sizes: readonly number[]): ByteSpan[] {
  let start = 0;
  return sizes.map((size) => {
    const span = { start, end: start + size };
    start += size;
    return span;
  });
}

function hashAll(data: Buffer, spans: readonly ByteSpan[], steps: readonly number[]): string[] {
  const reads: number[] = [];
  const lanes = new Md5Lanes(spans, (target, position) => {
    // Only bytes said to be available may be read.
    reads.push(position + target.length);
    target.set(data.subarray(position, position + target.length));
  });
  let available = 0;
  for (const step of steps) {
    available = Math.min(data.length, available + step);
    lanes.advance(available);
    expect(Math.max(0, ...reads)).toBeLessThanOrEqual(available);
  }
  lanes.advance(data.length, true);
  expect(lanes.done).toBe(true);
  return lanes.results().map((digest) => digest.toString("hex"));
}

const md5 = (data: Buffer, spans: readonly ByteSpan[]): string[] =>
  spans.map((s) => createHash("md5").update(data.subarray(s.start, s.end)).digest("hex"));

describe("Md5Lanes", () => {
  it("the kernel compiles here and is used for MD5 of 4 parts or more", () => {
    expect(md5LanesModule(2, 1).length).toBeGreaterThan(1000);
    expect(useMd5Lanes("MD5", 4)).toBe(true);
    expect(useMd5Lanes("MD5", 3)).toBe(false);
    expect(useMd5Lanes("SHA256", 100)).toBe(false);
  });

  it("every padding edge, an empty part and more parts than lanes", () => {
    const sizes = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 0, 64 * 1024 + 3];
    expect(sizes.length).toBeGreaterThan(LANES);
    const spans = spansOf(sizes);
    const data = randomBytes(spans.at(-1)?.end ?? 0);
    expect(hashAll(data, spans, [data.length])).toEqual(md5(data, spans));
  });

  it("parts larger than a lane's chunk, bytes arriving in uneven steps", () => {
    const sizes = [8 * 1024 * 1024, 8 * 1024 * 1024, 5 * 1024 * 1024 + 17, 3_000_001, 1, 700_000];
    const spans = spansOf(sizes);
    const data = randomBytes(spans.at(-1)?.end ?? 0);
    const steps = Array.from({ length: 60 }, (_, i) => 1 + ((i * 7919 * 104_729) % 1_300_000));
    expect(hashAll(data, spans, steps)).toEqual(md5(data, spans));
  });

  it("thousands of small parts, one byte at a time at first", () => {
    const sizes = Array.from({ length: 2000 }, (_, i) => (i * 37) % 300);
    const spans = spansOf(sizes);
    const data = randomBytes(spans.at(-1)?.end ?? 0);
    const steps = [...Array.from({ length: 500 }, () => 1), 4096, 65_536, 1_000_000];
    expect(hashAll(data, spans, steps)).toEqual(md5(data, spans));
  });

  it("each part's own availability (parts streaming in parallel), with forced calls", () => {
    const sizes = Array.from({ length: 19 }, (_, i) => 300_000 + i * 4_099);
    const spans = spansOf(sizes);
    const data = randomBytes(spans.at(-1)?.end ?? 0);
    const arrived = spans.map((span) => span.start);
    let overread = false;
    const lanes = new Md5Lanes(spans, (target, position) => {
      const part = spans.findIndex((span) => span.start <= position && position < span.end);
      // Only bytes of the part itself that arrived may be read.
      if (position + target.length > (arrived[part] ?? 0)) overread = true;
      target.set(data.subarray(position, position + target.length));
    });
    const hashed = () => spans.map((_, index) => lanes.hashedTo(index));
    // Eight parts at a time get bytes in uneven steps; every 5th step is forced (memory to free).
    for (let step = 0; !spans.every((span, i) => arrived[i] === span.end); step++) {
      for (let i = 0; i < spans.length; i++) {
        const span = spans[i] as ByteSpan;
        const before = spans.slice(0, i).every((s, j) => arrived[j] === s.end);
        if (i >= 8 && !before && arrived[i - 8] !== spans[i - 8]?.end) continue;
        arrived[i] = Math.min(span.end, (arrived[i] ?? 0) + 10_007 * ((i % 3) + 1));
      }
      const previous = hashed();
      let asked = 0;
      lanes.advance(
        (index) => arrived[index] ?? 0,
        false,
        () => step % 5 === 0 && asked++ < 3,
      );
      hashed().forEach((to, i) => {
        expect(to).toBeGreaterThanOrEqual(previous[i] ?? 0);
        expect(to).toBeLessThanOrEqual(arrived[i] ?? 0);
      });
    }
    lanes.advance((index) => arrived[index] ?? 0, true);
    expect(overread).toBe(false);
    expect(lanes.done).toBe(true);
    expect(hashed()).toEqual(spans.map((span) => span.end));
    expect(lanes.results().map((d) => d.toString("hex"))).toEqual(md5(data, spans));
  });

  it("parts that arrive in runs (a stream fetches consecutive parts): lanes take the parts with bytes", () => {
    // 8 streams, each fetching a run of two consecutive parts: at first parts 0, 2, 4, … have
    // bytes, 1, 3, 5, … none. Taken in order, half the lanes would wait for bytes that come
    // only after their stream's current part, and nothing would be hashed until forced.
    const spans = spansOf(Array.from({ length: 16 }, () => 300_000));
    const data = randomBytes(spans.at(-1)?.end ?? 0);
    const arrived = spans.map((span, index) => (index % 2 === 0 ? span.end : span.start));
    const withBytes = () =>
      spans.flatMap((span, index) => ((arrived[index] ?? 0) > span.start ? [index] : []));
    const lanes = new Md5Lanes(
      spans,
      (target, position) => target.set(data.subarray(position, position + target.length)),
      undefined,
      withBytes,
    );
    lanes.advance((index) => arrived[index] ?? 0);
    // The eight parts with bytes were hashed whole, in one pass of every lane; the others wait.
    expect(spans.map((_, index) => lanes.hashedTo(index))).toEqual(
      spans.map((span, index) => (index % 2 === 0 ? span.end : span.start)),
    );
    spans.forEach((span, index) => {
      arrived[index] = span.end;
    });
    lanes.advance((index) => arrived[index] ?? 0, true);
    expect(lanes.done).toBe(true);
    expect(lanes.results().map((d) => d.toString("hex"))).toEqual(md5(data, spans));
  });

  it("more parts with bytes than lanes: a part whose stream is slow does not hold the others back", () => {
    // Ten streams, one part each: part 0 has 100 bytes so far, the nine others a chunk and
    // more. Bound to the first eight parts, the lanes would wait for part 0 (or hash with a
    // lane idle when forced); here the eight others with bytes run, without being forced.
    const spans = spansOf(Array.from({ length: 10 }, () => 1_000_000));
    const data = randomBytes(spans.at(-1)?.end ?? 0);
    const arrived = spans.map((span, index) => span.start + (index === 0 ? 100 : 600_000));
    let forced = 0;
    const lanes = new Md5Lanes(
      spans,
      (target, position) => target.set(data.subarray(position, position + target.length)),
      undefined,
      () => spans.map((_, index) => index),
    );
    lanes.advance(
      (index) => arrived[index] ?? 0,
      false,
      () => {
        forced += 1;
        return false;
      },
    );
    const hashed = spans.map((span, index) => lanes.hashedTo(index) - span.start);
    expect(hashed[0]).toBe(0);
    // Two calls of eight whole chunks (256 KiB) each, spread over the nine parts with bytes;
    // then fewer than eight parts have a chunk left, and only then is `force` asked.
    const chunk = 256 * 1024;
    expect(hashed.slice(1).reduce((sum, bytes) => sum + bytes, 0)).toBe(16 * chunk);
    expect(hashed.slice(1).every((bytes) => bytes === chunk || bytes === 2 * chunk)).toBe(true);
    expect(forced).toBe(1);
    spans.forEach((span, index) => {
      arrived[index] = span.end;
    });
    lanes.advance((index) => arrived[index] ?? 0, true);
    expect(lanes.results().map((d) => d.toString("hex"))).toEqual(md5(data, spans));
  });

  it("parts that are not adjacent (one of several hashing threads takes every k-th)", () => {
    const all = spansOf(Array.from({ length: 40 }, (_, i) => 10_000 + i * 999));
    const mine = all.filter((_, i) => i % 3 === 1);
    const data = randomBytes(all.at(-1)?.end ?? 0);
    expect(hashAll(data, mine, [123_456, 200_000, 10, data.length])).toEqual(md5(data, mine));
  });

  it("a part over 512 MiB: the length in bits needs more than 32 bits", () => {
    // 2^29 bytes = 2^32 bits; the data is virtual (zeros), read on demand.
    const size = 2 ** 29 + 5;
    const spans = spansOf([size, 64, 64, 64]);
    const lanes = new Md5Lanes(spans, (target) => target.fill(0));
    lanes.advance(size + 192, true);
    const zeros = Buffer.alloc(16 * 1024 * 1024);
    const big = createHash("md5");
    for (let left = size; left > 0; left -= zeros.length)
      big.update(zeros.subarray(0, Math.min(left, zeros.length)));
    const small = createHash("md5").update(Buffer.alloc(64)).digest("hex");
    expect(lanes.results().map((d) => d.toString("hex"))).toEqual([
      big.digest("hex"),
      small,
      small,
      small,
    ]);
  });
});
