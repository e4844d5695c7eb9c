// The stream hasher reads chunks in shared memory in place (stage/expand.ts): it must report
// bytes as hashed only once it no longer reads them, because the memory is then reused.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createStreamHasher } from "../../src/fetch/stream-hasher.ts";
import { WORKER_HASH_THRESHOLD } from "../../src/fetch/worker-hasher.ts";

/** `data` cut into chunks of SharedArrayBuffer memory of varied sizes. */
function sharedChunks(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const sizes = [1, 700_000, 65_536, 3 * 1024 * 1024, 12_345];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length] as number, data.length - at);
    const chunk = Buffer.from(new SharedArrayBuffer(n));
    data.copy(chunk, 0, at, at + n);
    out.push(chunk);
    at += n;
  }
  return out;
}

/**
 * The caller's side of reuse: every chunk wholly reported hashed is overwritten at once, as
 * the download's buffer pool would reuse it; a hasher still reading it would get a wrong digest.
 */
function poisonOnReport(chunks: Buffer[]) {
  let ends = 0;
  const chunkEnds = chunks.map((c) => {
    ends += c.length;
    return ends;
  });
  const seen = { reported: 0, poisoned: 0 };
  const onHashed = (bytes: number): void => {
    seen.reported += bytes;
    while (seen.poisoned < chunks.length && (chunkEnds[seen.poisoned] as number) <= seen.reported) {
      (chunks[seen.poisoned] as Buffer).fill(0xee);
      seen.poisoned += 1;
    }
  };
  return { seen, onHashed };
}

describe("stream hasher and shared chunks", () => {
  // The size only chooses where hashing runs: at the threshold, a worker thread.
  for (const [where, declared] of [
    ["this thread", 1024],
    ["a worker thread", WORKER_HASH_THRESHOLD],
  ] as const) {
    it(`on ${where}, a chunk reported hashed can be overwritten without changing the digest`, async () => {
      const data = randomBytes(9 * 1024 * 1024 + 77);
      const half = Math.floor(data.length / 2);
      const spans = [
        { start: 0, end: half },
        { start: half, end: data.length },
      ];
      const chunks = sharedChunks(data);
      const { seen, onHashed } = poisonOnReport(chunks);
      const hasher = createStreamHasher("MD5", spans, declared, onHashed);
      for (const chunk of chunks) await hasher.update(chunk);
      const digests = await hasher.finish();
      expect(seen.reported).toBe(data.length);
      expect(seen.poisoned).toBe(chunks.length);
      expect(digests.map((d) => d.toString("hex"))).toEqual([
        createHash("md5").update(data.subarray(0, half)).digest("hex"),
        createHash("md5").update(data.subarray(half)).digest("hex"),
      ]);
    });
  }
  // Small parts (the AWS CLI's 8 MiB) are hashed several at once by the SIMD lanes: the worker
  // holds the stream's chunks until it has `laneHold` bytes (stream-hash-worker.ts). Holds
  // much smaller than the chunks and larger than several: no wait on each other, and memory
  // reported hashed is never read again.
  for (const [label, laneHold, shared] of [
    ["a hold smaller than the chunks", 256 * 1024, true],
    ["a hold of several chunks", 2 * 1024 * 1024, true],
    ["chunks not in shared memory (copied)", 1024 * 1024, false],
  ] as const) {
    it(`in lanes, ${label}: every part's digest, every chunk reported once no longer read`, async () => {
      const data = randomBytes(9 * 1024 * 1024 + 77);
      // 23 parts of 400,000 bytes and a short last one: parts straddle every chunk size.
      const spans: { start: number; end: number }[] = [];
      for (let at = 0; at < data.length; at += 400_000) {
        spans.push({ start: at, end: Math.min(data.length, at + 400_000) });
      }
      const chunks = shared
        ? sharedChunks(data)
        : sharedChunks(data).map((chunk) => Buffer.from(chunk));
      const { seen, onHashed } = poisonOnReport(chunks);
      const hasher = createStreamHasher("MD5", spans, WORKER_HASH_THRESHOLD, onHashed, laneHold);
      // The lanes' way was chosen: the worker's hold may be unacknowledged.
      expect(hasher.holdBytes).toBe(laneHold);
      for (const chunk of chunks) await hasher.update(chunk);
      const digests = await hasher.finish();
      expect(seen.reported).toBe(data.length);
      expect(seen.poisoned).toBe(chunks.length);
      expect(digests.map((d) => d.toString("hex"))).toEqual(
        spans.map((span) =>
          createHash("md5").update(data.subarray(span.start, span.end)).digest("hex"),
        ),
      );
    });
  }

  it("in lanes, a chunk that brings the worker to exactly its hold and then one of less: no wait for good", async () => {
    // Found in review: the sender went on only at half its bound, and waited with the second
    // chunk (between half the hold and the hold) unacknowledged, which the worker, short of
    // its hold, never hashed.
    const hold = 1024 * 1024;
    const data = randomBytes(hold + 551_424);
    const spans = [0, 1, 2, 3].map((i) => ({
      start: i * 400_000,
      end: i === 3 ? data.length : (i + 1) * 400_000,
    }));
    const chunks = [data.subarray(0, hold), data.subarray(hold)].map((part) => {
      const chunk = Buffer.from(new SharedArrayBuffer(part.length));
      part.copy(chunk);
      return chunk;
    });
    let reported = 0;
    const hasher = createStreamHasher(
      "MD5",
      spans,
      WORKER_HASH_THRESHOLD,
      (bytes) => {
        reported += bytes;
      },
      hold,
    );
    for (const chunk of chunks) await hasher.update(chunk);
    const digests = await hasher.finish();
    expect(reported).toBe(data.length);
    expect(digests.map((d) => d.toString("hex"))).toEqual(
      spans.map((span) =>
        createHash("md5").update(data.subarray(span.start, span.end)).digest("hex"),
      ),
    );
  }, 20_000);

  it("parts over 8 MiB, or fewer than 4, are hashed one at a time", () => {
    const big = [0, 1, 2, 3].map((i) => ({ start: i * 9 * 2 ** 20, end: (i + 1) * 9 * 2 ** 20 }));
    const few = [0, 1, 2].map((i) => ({ start: i * 2 ** 20, end: (i + 1) * 2 ** 20 }));
    for (const spans of [big, few]) {
      const hasher = createStreamHasher("MD5", spans, WORKER_HASH_THRESHOLD, () => {}, 1024);
      expect(hasher.holdBytes).toBe(16 * 1024 * 1024);
      hasher.dispose();
    }
  });
});
