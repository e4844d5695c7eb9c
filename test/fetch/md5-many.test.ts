// md5Many / md5Soon: the MD5 of many separate inputs (a folder's small objects) hashed
// together in the SIMD lanes is exactly OpenSSL's, whatever the sizes and batch sizes, and the
// one reused kernel instance carries nothing from one batch into the next.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { md5Soon } from "../../src/fetch/md5-batch.ts";
import { Md5Lanes, md5Many } from "../../src/fetch/md5-lanes.ts";

const openssl = (input: Uint8Array): string => createHash("md5").update(input).digest("hex");

describe("md5Many", () => {
  it("gives OpenSSL's digest of every input, for any sizes and counts", () => {
    // Padding edges (55/56/63/64/119/120), empty inputs, inputs over a lane's 256 KiB chunk.
    const edges = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 16384, 300_000];
    for (const count of [1, 3, 4, 8, 9, 17, 40]) {
      const inputs = Array.from({ length: count }, (_, i) =>
        randomBytes(edges[(i * 7 + count) % edges.length] ?? 0),
      );
      const got = md5Many(inputs).map((digest) => digest.toString("hex"));
      expect(got).toEqual(inputs.map(openssl));
    }
  });

  it("batches after one another, and a multipart hash meanwhile, do not disturb each other", () => {
    const data = randomBytes(3 << 20);
    const spans = [0, 1, 2].map((i) => ({ start: i << 20, end: (i + 1) << 20 }));
    // A multipart object's lanes hold their state in their own instance between advances.
    const lanes = new Md5Lanes(spans, (target, position) => {
      target.set(data.subarray(position, position + target.length));
    });
    lanes.advance(1 << 20);
    for (let round = 0; round < 5; round++) {
      const inputs = Array.from({ length: 12 }, (_, i) => randomBytes(1000 * i + round));
      expect(md5Many(inputs).map((d) => d.toString("hex"))).toEqual(inputs.map(openssl));
    }
    lanes.advance(data.length, true);
    expect(lanes.results().map((d) => d.toString("hex"))).toEqual(
      spans.map((s) => openssl(data.subarray(s.start, s.end))),
    );
  });
});

describe("md5Soon", () => {
  it("hashes what was asked in one turn together, each answer its own input's digest", async () => {
    for (const count of [1, 2, 5, 8, 33]) {
      const inputs = Array.from({ length: count }, (_, i) => randomBytes(16384 + i * 13));
      const digests = await Promise.all(inputs.map((input) => md5Soon(input)));
      expect(digests.map((d) => d.toString("hex"))).toEqual(inputs.map(openssl));
    }
  });

  it("inputs asked for in later turns get their own digests too", async () => {
    const first = randomBytes(5000);
    const pending = md5Soon(first);
    await new Promise((resolve) => setImmediate(resolve));
    const second = randomBytes(7000);
    expect((await pending).toString("hex")).toBe(openssl(first));
    expect((await md5Soon(second)).toString("hex")).toBe(openssl(second));
  });
});
