// BufferPool and Channel's onConsumed: range memory is reused only once nobody reads it.
import { describe, expect, it } from "vitest";
import { BufferPool } from "../../src/util/buffer-pool.ts";
import { Channel } from "../../src/util/channel.ts";

describe("BufferPool", () => {
  it("gives back the memory it made, up to `keep` buffers, and nothing else", () => {
    const pool = new BufferPool(1024, 1);
    const a = pool.take(1024);
    const b = pool.take(10);
    expect(b.length).toBe(10);
    expect(a.buffer).not.toBe(b.buffer);
    pool.give(a.subarray(5, 7)); // a view of a taken buffer returns the whole buffer
    pool.give(b); // over `keep`: left to the GC
    pool.give(Buffer.alloc(1024)); // not the pool's
    const c = pool.take(1024);
    expect(c.buffer).toBe(a.buffer);
    expect(pool.take(1024).buffer).not.toBe(b.buffer);
  });

  it("a request larger than its size gets a buffer of its own", () => {
    const pool = new BufferPool(16, 4);
    const big = pool.take(100);
    expect(big.length).toBe(100);
    pool.give(big);
    expect(pool.take(16).buffer).not.toBe(big.buffer);
  });
});

describe("Channel onConsumed", () => {
  it("reports a chunk only when the consumer asks for the next one, or drops it", async () => {
    const consumed: string[] = [];
    const channel = new Channel(1 << 20, (chunk) => consumed.push(chunk.toString()));
    await channel.push(Buffer.from("a"));
    await channel.push(Buffer.from("b"));
    await channel.push(Buffer.from("c"));
    const iterator = channel[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.toString()).toBe("a");
    expect(consumed).toEqual([]); // "a" is still being read
    expect((await iterator.next()).value?.toString()).toBe("b");
    expect(consumed).toEqual(["a"]);
    // The consumer stops early: the chunk it held and the queued one are done with.
    await iterator.return?.(undefined);
    expect(consumed).toEqual(["a", "b", "c"]);
    // Later pushes are dropped at once.
    await channel.push(Buffer.from("d"));
    expect(consumed).toEqual(["a", "b", "c", "d"]);
  });

  it("abandon() releases a producer waiting on a full queue, before any read", async () => {
    const consumed: string[] = [];
    const channel = new Channel(1, (chunk) => consumed.push(chunk.toString()));
    await channel.push(Buffer.from("a")); // at the high-water mark: no wait yet
    let released = false;
    const blocked = channel.push(Buffer.from("bc")).then(() => {
      released = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(released).toBe(false);
    channel.abandon();
    await blocked;
    expect(consumed).toEqual(["a", "bc"]);
  });
});

describe("BufferPool with shared memory", () => {
  it("hands out SharedArrayBuffer memory and takes it back", () => {
    const pool = new BufferPool(64, 2, { shared: true });
    const a = pool.take(64);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    pool.give(a.subarray(1, 3));
    expect(pool.take(10).buffer).toBe(a.buffer);
    // Shared memory it did not make is not taken in.
    const foreign = Buffer.from(new SharedArrayBuffer(64));
    pool.give(foreign);
    expect(pool.take(64).buffer).not.toBe(foreign.buffer);
  });
});
