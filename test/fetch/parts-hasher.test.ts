// PartsHasher: the parts of a multipart object hashed by several worker threads (every k-th
// part each) give exactly the per-part digests of one ordered pass, whatever the count.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashThreadsForTests, PartsHasher } from "../../src/fetch/worker-hasher.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dsfetch-parts-hasher-"));
});
afterAll(async () => {
  hashThreadsForTests(undefined);
  await rm(dir, { recursive: true, force: true });
});

describe("PartsHasher", () => {
  for (const workers of [1, 2, 3]) {
    it(`${workers} worker(s): one digest per part, in part order`, async () => {
      const data = randomBytes(5 * 1024 * 1024 + 123);
      const path = join(dir, `object-${workers}`);
      await writeFile(path, data);
      const cuts = [0, 1_000_000, 1_000_001, 2_500_000, 4_000_000, data.length];
      const parts = cuts.slice(1).map((end, i) => ({ start: cuts[i] as number, end }));
      const hasher = new PartsHasher(path, parts, "MD5", workers);
      // The written frontier advances in steps, as a download's would.
      for (let offset = 0; offset < data.length; offset += 700_000) hasher.advanceTo(offset);
      const digests = await hasher.finish(data.length);
      const expected = parts.map((p) =>
        createHash("md5").update(data.subarray(p.start, p.end)).digest("hex"),
      );
      expect(digests.map((d) => d.toString("hex"))).toEqual(expected);
    });
  }

  it("an empty object has the digest of nothing", async () => {
    const path = join(dir, "empty");
    await writeFile(path, "");
    const hasher = new PartsHasher(path, [{ start: 0, end: 0 }], "SHA256", 2);
    const digests = await hasher.finish(0);
    expect(digests.map((d) => d.toString("hex"))).toEqual([createHash("sha256").digest("hex")]);
  });

  // The hash trails the download; a folder's stall clock hears from it while it runs.
  for (const [what, parts] of [
    ["one part (OpenSSL, in order)", 1],
    ["many parts (the SIMD lanes)", 8],
  ] as const) {
    it(`says it is hashing, every 16 MiB: ${what}`, async () => {
      const data = randomBytes(64 * 1024 * 1024);
      const path = join(dir, `progress-${parts}`);
      await writeFile(path, data);
      const size = data.length / parts;
      const spans = Array.from({ length: parts }, (_, i) => ({
        start: i * size,
        end: (i + 1) * size,
      }));
      let reports = 0;
      const hasher = new PartsHasher(path, spans, "MD5", 1, () => {
        reports += 1;
      });
      const digests = await hasher.finish(data.length);
      expect(digests).toHaveLength(parts);
      expect(reports).toBe(4);
    });
  }

  // Review, 2026-12-06: each large object of a folder (32 in flight) started its own
  // threads, 128 on a 5-core machine. The process has one budget of hashing threads.
  describe("many objects at once share the process's hashing threads", () => {
    const algorithms = ["MD5", "SHA256", "MD5", "SHA1", "MD5", "SHA256", "MD5", "MD5"] as const;
    const digestOf = (algorithm: string, bytes: Buffer): string =>
      createHash(algorithm.toLowerCase()).update(bytes).digest("hex");

    it("never more threads than the budget, every digest right, none left running", async () => {
      hashThreadsForTests(2);
      const objects = await Promise.all(
        algorithms.map(async (algorithm, n) => {
          const data = randomBytes(9 * 1024 * 1024 + 1000 * n + 7);
          const path = join(dir, `shared-${n}`);
          await writeFile(path, data);
          // 1 part (in order) or 9 parts of ~1 MiB (MD5 in the SIMD lanes).
          const count = n % 2 === 0 ? 9 : 1;
          const size = Math.ceil(data.length / count);
          const parts = Array.from({ length: count }, (_, i) => ({
            start: i * size,
            end: Math.min(data.length, (i + 1) * size),
          }));
          return { data, path, parts, algorithm };
        }),
      );
      const hashers = objects.map(
        (object) => new PartsHasher(object.path, object.parts, object.algorithm, 3),
      );
      // The written frontiers advance in turns, as a folder's downloads would.
      for (let offset = 0; offset < 10 * 1024 * 1024; offset += 512 * 1024) {
        for (const hasher of hashers) hasher.advanceTo(offset);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const digests = await Promise.all(
        hashers.map((hasher, n) => hasher.finish((objects[n] as { data: Buffer }).data.length)),
      );
      for (const [n, object] of objects.entries()) {
        expect(
          digests[n]?.map((d) => d.toString("hex")),
          `object ${n}`,
        ).toEqual(
          object.parts.map((p) => digestOf(object.algorithm, object.data.subarray(p.start, p.end))),
        );
      }
      const seen = hashThreadsForTests(undefined);
      expect(seen.peak).toBe(2);
      expect(seen.running).toBe(0);
    });

    it("one object alone still gets all the threads it asks for", async () => {
      hashThreadsForTests(8);
      const data = randomBytes(6 * 1024 * 1024);
      const path = join(dir, "alone");
      await writeFile(path, data);
      const parts = [0, 1, 2, 3, 4, 5].map((i) => ({
        start: i * 1024 * 1024,
        end: (i + 1) * 1024 * 1024,
      }));
      const hasher = new PartsHasher(path, parts, "MD5", 3);
      const digests = await hasher.finish(data.length);
      expect(digests.map((d) => d.toString("hex"))).toEqual(
        parts.map((p) => digestOf("MD5", data.subarray(p.start, p.end))),
      );
      expect(hashThreadsForTests(undefined).peak).toBe(3);
    });

    it("an object given up on a shared thread leaves the others' hashing whole", async () => {
      hashThreadsForTests(1);
      const data = randomBytes(12 * 1024 * 1024 + 5);
      const path = join(dir, "given-up");
      await writeFile(path, data);
      const whole = [{ start: 0, end: data.length }];
      const kept = new PartsHasher(path, whole, "SHA256", 4);
      const dropped = new PartsHasher(path, whole, "MD5", 4);
      kept.advanceTo(8 * 1024 * 1024);
      dropped.advanceTo(8 * 1024 * 1024);
      dropped.dispose();
      expect((await kept.finish(data.length)).map((d) => d.toString("hex"))).toEqual([
        digestOf("SHA256", data),
      ]);
      const seen = hashThreadsForTests(undefined);
      expect(seen.peak).toBe(1);
      expect(seen.running).toBe(0);
    });
  });
});
