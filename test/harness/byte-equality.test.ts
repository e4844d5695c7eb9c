// The byte comparison every test file gets (byte-equality.ts): the verdicts of vitest's own.
import { describe, expect, it } from "vitest";
import { decided, sameBytes } from "./byte-equality.ts";

describe("toEqual of byte arrays (test/harness/byte-equality.ts)", () => {
  it("is registered: equal bytes pass, one byte off fails, whatever the views' offsets", () => {
    const before = decided.count;
    const whole = Buffer.from("xxhello worldyy");
    const view = whole.subarray(2, 13);
    expect(view).toEqual(Buffer.from("hello world"));
    expect(view).toStrictEqual(Buffer.from("hello world"));
    expect(view).not.toEqual(Buffer.from("hello worle"));
    expect(view).not.toEqual(Buffer.from("hello worl"));
    expect({ body: view }).toEqual({ body: Buffer.from("hello world") });
    expect([new Uint8Array([1, 2, 3])]).not.toEqual([new Uint8Array([1, 2, 4])]);
    // Decided here, not by vitest's walk (the same module instance as setupFiles loads).
    expect(decided.count - before).toBeGreaterThanOrEqual(6);
  });

  it("decides only for two arrays of one kind", () => {
    expect(sameBytes(Buffer.from("a"), Buffer.from("a"))).toBe(true);
    expect(sameBytes(Buffer.from("a"), Buffer.from("b"))).toBe(false);
    expect(sameBytes(new Uint8Array([1]), new Uint8Array([1]))).toBe(true);
    expect(sameBytes(Buffer.from([1]), new Uint8Array([1]))).toBeUndefined();
    expect(sameBytes(Buffer.from([1]), [1])).toBeUndefined();
    expect(sameBytes(new Uint16Array([1]), new Uint16Array([1]))).toBeUndefined();
    // Left to vitest, as before: a Buffer is not strictly equal to a Uint8Array of its bytes.
    expect(Buffer.from([1])).not.toStrictEqual(new Uint8Array([1]));
  });
});
