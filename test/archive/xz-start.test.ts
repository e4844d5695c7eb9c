// xzFirstBlock(): what the first block header of a real xz stream declares (files written by
// the system's xz here), and pixzThreads(): when pixz may decode such a stream in parallel.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { pixzThreads } from "../../src/archive/decompress.ts";
import { xzFirstBlock } from "../../src/archive/xz-start.ts";

const MiB = 1024 * 1024;
const data = Buffer.concat([randomBytes(200_000), Buffer.alloc(400_000, "dsfetch ")]);

function xz(args: string[]): Buffer {
  return execFileSync("xz", ["-c", ...args], { input: data, maxBuffer: 1 << 26 });
}

describe("xzFirstBlock", () => {
  it("multi-threaded xz: the block's sizes and the preset's dictionary", () => {
    for (const [preset, dictionary] of [
      ["-1", 1 * MiB],
      ["-6", 8 * MiB],
    ] as const) {
      const first = xzFirstBlock(xz([preset, "-T2", "--block-size=100000"]));
      expect(first).toEqual({
        compressedBytes: expect.any(Number),
        uncompressedBytes: 100_000,
        dictionaryBytes: dictionary,
      });
      expect(first?.compressedBytes).toBeGreaterThan(0);
    }
  });

  it("an odd dictionary size (3 MiB) and a filter before LZMA2 (x86 BCJ)", () => {
    expect(xzFirstBlock(xz(["-T2", "--block-size=100000", "--lzma2=dict=3MiB"]))).toMatchObject({
      dictionaryBytes: 3 * MiB,
    });
    expect(
      xzFirstBlock(xz(["-T2", "--block-size=100000", "--x86", "--lzma2=preset=1"])),
    ).toMatchObject({
      uncompressedBytes: 100_000,
      dictionaryBytes: 1 * MiB,
    });
  });

  it("one block from a single-threaded xz: no sizes in its header", () => {
    expect(xzFirstBlock(xz(["-T1"]))).toEqual({
      compressedBytes: undefined,
      uncompressedBytes: undefined,
      dictionaryBytes: 8 * MiB,
    });
  });

  it("anything else is not read: another format, truncated, a damaged header, no block", () => {
    const good = xz(["-T2", "--block-size=100000"]);
    expect(xzFirstBlock(good.subarray(0, 20))).toBeUndefined();
    expect(xzFirstBlock(Buffer.from("not xz at all, just text of some length"))).toBeUndefined();
    const damaged = Buffer.from(good);
    damaged[14] = (damaged[14] as number) ^ 0x01; // inside the block header: its CRC32 fails
    expect(xzFirstBlock(damaged)).toBeUndefined();
    const flags = Buffer.from(good);
    flags[6] = 1; // stream flags must start with a zero byte
    expect(xzFirstBlock(flags)).toBeUndefined();
    const empty = execFileSync("xz", ["-c"], { input: Buffer.alloc(0) });
    expect(xzFirstBlock(empty)).toBeUndefined();
  });
});

describe("pixzThreads", () => {
  const block = { compressedBytes: 2 * MiB, uncompressedBytes: 3 * MiB, dictionaryBytes: MiB };

  it("as many threads as cores (at most 8) when blocks like the first fit the limit", () => {
    expect(pixzThreads(block, 1024 * MiB, 2)).toBe(2);
    expect(pixzThreads(block, 1024 * MiB, 64)).toBe(8);
    // 6 MiB a thread: three fit in 20 MiB.
    expect(pixzThreads(block, 20 * MiB, 64)).toBe(3);
  });

  it("none when pixz would not decode in parallel or would not fit", () => {
    expect(pixzThreads(undefined, 1024 * MiB, 8)).toBe(0);
    expect(
      pixzThreads(
        { compressedBytes: undefined, uncompressedBytes: undefined, dictionaryBytes: MiB },
        1024 * MiB,
        8,
      ),
    ).toBe(0);
    expect(pixzThreads(block, 1024 * MiB, 1)).toBe(0);
    // xz -9 -T0: 64 MiB dictionary, 192 MiB blocks: one thread fits 300 MiB, not two.
    const nine = {
      compressedBytes: 60 * MiB,
      uncompressedBytes: 192 * MiB,
      dictionaryBytes: 64 * MiB,
    };
    expect(pixzThreads(nine, 300 * MiB, 8)).toBe(0);
    expect(pixzThreads(nine, 1024 * MiB, 8)).toBe(3);
  });
});
