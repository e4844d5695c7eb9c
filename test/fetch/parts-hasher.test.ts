// PartsHasher: the parts of a multipart object hashed by several worker threads (every k-th
// part each) give exactly the per-part digests of one ordered pass, whatever the count.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PartsHasher } from "../../src/fetch/worker-hasher.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dsfetch-parts-hasher-"));
});
afterAll(async () => {
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
});
