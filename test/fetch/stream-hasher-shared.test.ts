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
      let reported = 0;
      let poisoned = 0;
      let ends = 0;
      const chunkEnds = chunks.map((c) => {
        ends += c.length;
        return ends;
      });
      const hasher = createStreamHasher("MD5", spans, declared, (bytes) => {
        reported += bytes;
        // Reuse: every chunk wholly reported is overwritten at once.
        while (poisoned < chunks.length && (chunkEnds[poisoned] as number) <= reported) {
          (chunks[poisoned] as Buffer).fill(0xee);
          poisoned += 1;
        }
      });
      for (const chunk of chunks) await hasher.update(chunk);
      const digests = await hasher.finish();
      expect(reported).toBe(data.length);
      expect(poisoned).toBe(chunks.length);
      expect(digests.map((d) => d.toString("hex"))).toEqual([
        createHash("md5").update(data.subarray(0, half)).digest("hex"),
        createHash("md5").update(data.subarray(half)).digest("hex"),
      ]);
    });
  }
});
