// TransferBatches: chunks in, fixed-size batches out (the bytes in order, none lost or
// repeated), given-back memory reused, and nothing reused that was not given back.

import { describe, expect, it } from "vitest";
import { TransferBatches } from "../../src/util/transfer-batches.ts";

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

describe("TransferBatches", () => {
  it("sends full batches of the bytes in order, then the rest on flush", () => {
    const sent: Uint8Array[] = [];
    const batches = new TransferBatches(1000, (bytes) => sent.push(bytes.slice()));
    const chunks = [
      pattern(10, 1),
      pattern(2500, 2),
      pattern(0, 3),
      pattern(999, 4),
      pattern(7, 5),
    ];
    for (const chunk of chunks) batches.add(chunk);
    expect(sent.map((b) => b.length)).toEqual([1000, 1000, 1000]);
    batches.flush();
    batches.flush(); // nothing more to send
    expect(sent.map((b) => b.length)).toEqual([1000, 1000, 1000, 516]);
    const all = Buffer.concat(sent);
    expect(all.equals(Buffer.concat(chunks))).toBe(true);
  });

  it("refills memory given back, and only that", () => {
    const buffers: ArrayBuffer[] = [];
    const batches = new TransferBatches(64, (bytes) => buffers.push(bytes.buffer as ArrayBuffer));
    batches.add(pattern(64, 1));
    batches.add(pattern(64, 2));
    expect(buffers[0]).not.toBe(buffers[1]);
    const first = buffers[0] as ArrayBuffer;
    batches.recycle(first);
    batches.recycle(new ArrayBuffer(32)); // another size: not reused
    batches.add(pattern(64, 3));
    expect(buffers[2]).toBe(first);
    expect(Buffer.from(first).equals(Buffer.from(pattern(64, 3)))).toBe(true);
    batches.add(pattern(64, 4));
    expect(buffers[3]).not.toBe(first);
    expect(buffers[3]?.byteLength).toBe(64);
  });

  it("holds at most `keep` buffers for reuse", () => {
    const buffers: ArrayBuffer[] = [];
    const batches = new TransferBatches(8, (bytes) => buffers.push(bytes.buffer as ArrayBuffer), 2);
    const given = [new ArrayBuffer(8), new ArrayBuffer(8), new ArrayBuffer(8)];
    for (const buffer of given) batches.recycle(buffer);
    for (let i = 0; i < 3; i++) batches.add(pattern(8, i));
    expect(buffers.filter((b) => given.includes(b))).toHaveLength(2);
  });
});
