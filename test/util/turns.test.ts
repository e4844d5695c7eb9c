// Turns (util/turns.ts): the bound on a folder's objects in flight and on their bodies' memory.
import { describe, expect, it } from "vitest";
import { Turns } from "../../src/util/turns.ts";

/** Acquires in order; returns who got a turn so far, by name. */
function contenders(turns: Turns, wants: readonly [string, number][]) {
  const got: string[] = [];
  for (const [name, units] of wants) void turns.acquire(units).then(() => got.push(name));
  return got;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("Turns", () => {
  it("holds at most the limit in units; a release lets the next waiters in, in order", async () => {
    const turns = new Turns(10);
    const got = contenders(turns, [
      ["a", 4],
      ["b", 4],
      ["c", 4],
      ["d", 1],
    ]);
    await settle();
    // d would fit beside a and b, but waits behind c: a large holder is never overtaken.
    expect(got).toEqual(["a", "b"]);
    turns.release(4);
    await settle();
    expect(got).toEqual(["a", "b", "c", "d"]);
  });

  it("a holder larger than the whole limit gets its turn, alone", async () => {
    const turns = new Turns(10);
    const got = contenders(turns, [
      ["small", 2],
      ["huge", 50],
      ["after", 1],
    ]);
    await settle();
    expect(got).toEqual(["small"]);
    turns.release(2);
    await settle();
    expect(got).toEqual(["small", "huge"]);
    turns.release(50);
    await settle();
    expect(got).toEqual(["small", "huge", "after"]);
  });

  it("counts turns when no units are given", async () => {
    const turns = new Turns(2);
    const got = contenders(turns, [
      ["a", 1],
      ["b", 1],
      ["c", 1],
    ]);
    await settle();
    expect(got).toEqual(["a", "b"]);
    turns.release();
    await settle();
    expect(got).toEqual(["a", "b", "c"]);
  });
});
