// md5Soon when the SIMD lanes fail (no kernel instance to be had): every object still gets
// its own correct digest, by OpenSSL, instead of the whole batch failing (review, 2026-12-06).
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it, vi } from "vitest";

vi.mock("../../src/fetch/md5-lanes.ts", async (original) => ({
  ...(await original<typeof import("../../src/fetch/md5-lanes.ts")>()),
  md5Many: () => {
    throw new Error("WebAssembly.Instance(): Out of memory");
  },
}));

const { md5Soon } = await import("../../src/fetch/md5-batch.ts");

describe("md5Soon without the lanes", () => {
  it("answers every waiting object with OpenSSL's digest", async () => {
    const inputs = Array.from({ length: 11 }, (_, i) => randomBytes(1000 + i));
    const digests = await Promise.all(inputs.map((input) => md5Soon(input)));
    expect(digests.map((d) => d.toString("hex"))).toEqual(
      inputs.map((input) => createHash("md5").update(input).digest("hex")),
    );
  });
});
