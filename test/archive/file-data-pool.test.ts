// The memory of files queued for parallel writes (src/archive/file-data-pool.ts).
import { describe, expect, it } from "vitest";
import { FileDataPool, MIN_POOLED, pooledSize } from "../../src/archive/file-data-pool.ts";

describe("FileDataPool", () => {
  it("serves a size from at most a quarter more, never less", () => {
    for (let size = 1; size <= 2 << 20; size += 997) {
      const served = pooledSize(size);
      expect(served).toBeGreaterThanOrEqual(size);
      if (size > MIN_POOLED) expect(served).toBeLessThanOrEqual(size * 1.25);
    }
    expect([4097, 8192, 8193, 16 << 10, (16 << 10) + 1, 1 << 20].map(pooledSize)).toEqual([
      5 << 10,
      8 << 10,
      10 << 10,
      16 << 10,
      20 << 10,
      1 << 20,
    ]);
  });

  it("hands memory given back out again, of the same size only", () => {
    const pool = new FileDataPool(1 << 20);
    const a = pool.take(20_000);
    expect(a.length).toBe(20_000);
    pool.give(a);
    const b = pool.take(19_000);
    expect(b.buffer).toBe(a.buffer);
    expect(b.length).toBe(19_000);
    const c = pool.take(40_000);
    expect(c.buffer).not.toBe(a.buffer);
    expect(pool.allocated).toBe(2);
  });

  it("never lends one memory twice: a second give, or memory it did not make, is ignored", () => {
    const pool = new FileDataPool(1 << 20);
    const a = pool.take(10_000);
    pool.give(a);
    pool.give(a);
    const first = pool.take(10_000);
    const second = pool.take(10_000);
    expect(second.buffer).not.toBe(first.buffer);
    pool.give(Buffer.alloc(10_000));
    pool.give(Buffer.alloc(100));
    expect(pool.take(10_000).buffer).not.toBe(first.buffer);
    expect(pool.allocated).toBe(3);
  });

  it("keeps at most its bound of given-back memory", () => {
    const pool = new FileDataPool(64 << 10);
    const taken = Array.from({ length: 4 }, () => pool.take(32 << 10));
    for (const buffer of taken) pool.give(buffer);
    // Two of 32 KiB fit the 64 KiB bound: the other two were left to the GC.
    const again = Array.from({ length: 4 }, () => pool.take(32 << 10));
    expect(again.filter((b) => taken.some((t) => t.buffer === b.buffer))).toHaveLength(2);
    expect(pool.allocated).toBe(6);
  });

  it("small sizes come from Node's own pool", () => {
    const pool = new FileDataPool(1 << 20);
    const small = pool.take(100);
    expect(small.length).toBe(100);
    pool.give(small);
    expect(pool.allocated).toBe(0);
  });
});
