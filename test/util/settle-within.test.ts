// settleWithin: best-effort cleanup after a stall never holds the answer back for longer than
// its bound, and its failure is not an unhandled rejection.
import { describe, expect, it } from "vitest";
import { settleWithin } from "../../src/util/settle-within.ts";

describe("settleWithin", () => {
  it("is true as soon as the work settles, without waiting for the bound", async () => {
    const started = performance.now();
    expect(await settleWithin(Promise.resolve(), 10_000)).toBe(true);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("is true for work that failed (its error is not thrown, nor left unhandled)", async () => {
    expect(await settleWithin(Promise.reject(new Error("EIO")), 10_000)).toBe(true);
  });

  it("is false after the bound for work that never settles (storage that does not answer)", async () => {
    const started = performance.now();
    expect(await settleWithin(new Promise(() => {}), 200)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(195);
  });
});
