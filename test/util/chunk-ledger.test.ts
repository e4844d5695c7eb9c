// ChunkLedger: shared range memory is reused only once every reader is past it.
import { describe, expect, it } from "vitest";
import { ChunkLedger } from "../../src/util/chunk-ledger.ts";

const chunk = (name: string, length: number) => ({ name, length });

describe("ChunkLedger", () => {
  it("frees a chunk only when every consumer is past its end, in stream order", () => {
    const freed: string[] = [];
    const ledger = new ChunkLedger<{ name: string; length: number }>(2, (c) => freed.push(c.name));
    ledger.add(chunk("a", 10));
    ledger.add(chunk("b", 5));
    ledger.add(chunk("c", 7));
    ledger.advance(0, 22); // the hasher is done with everything
    expect(freed).toEqual([]);
    ledger.advance(1, 9); // the extractor is 1 byte short of a's end
    expect(freed).toEqual([]);
    ledger.advance(1, 1);
    expect(freed).toEqual(["a"]);
    ledger.advance(1, 11); // past b, 1 byte short of c
    expect(freed).toEqual(["a", "b"]);
    ledger.advance(1, 1);
    expect(freed).toEqual(["a", "b", "c"]);
  });

  it("a retired consumer holds nothing: the others alone decide", () => {
    const freed: string[] = [];
    const ledger = new ChunkLedger<{ name: string; length: number }>(2, (c) => freed.push(c.name));
    ledger.add(chunk("a", 4));
    ledger.advance(0, 4);
    expect(freed).toEqual([]);
    ledger.retire(1);
    expect(freed).toEqual(["a"]);
    ledger.add(chunk("b", 4));
    expect(freed).toEqual(["a"]);
    ledger.advance(0, 4);
    expect(freed).toEqual(["a", "b"]);
  });

  it("counts bytes across chunk boundaries (a consumer's reports need not match chunks)", () => {
    const freed: string[] = [];
    const ledger = new ChunkLedger<{ name: string; length: number }>(1, (c) => freed.push(c.name));
    for (const name of ["a", "b", "c", "d"]) ledger.add(chunk(name, 3));
    ledger.advance(0, 7);
    expect(freed).toEqual(["a", "b"]);
    ledger.advance(0, 5);
    expect(freed).toEqual(["a", "b", "c", "d"]);
  });
});
