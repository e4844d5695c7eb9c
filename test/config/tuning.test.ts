// Tuning from the environment: DSFETCH_EXTRACT_STALL_TIMEOUT (the extraction watchdog's bound).
import { describe, expect, it } from "vitest";
import { resolveTuning } from "../../src/config/tuning.ts";

describe("DSFETCH_EXTRACT_STALL_TIMEOUT", () => {
  it("defaults to 300 s and takes seconds, decimals included", () => {
    expect(resolveTuning({}).extractStallTimeoutMs).toBe(300_000);
    expect(resolveTuning({ DSFETCH_EXTRACT_STALL_TIMEOUT: "" }).extractStallTimeoutMs).toBe(
      300_000,
    );
    expect(resolveTuning({ DSFETCH_EXTRACT_STALL_TIMEOUT: "2.5" }).extractStallTimeoutMs).toBe(
      2500,
    );
    expect(resolveTuning({ DSFETCH_EXTRACT_STALL_TIMEOUT: "86400" }).extractStallTimeoutMs).toBe(
      86_400_000,
    );
  });

  it.each(["0", "-5", "5m", "abc", "86401"])("%j is a USAGE error naming the variable", (text) => {
    expect(() => resolveTuning({ DSFETCH_EXTRACT_STALL_TIMEOUT: text })).toThrow(
      expect.objectContaining({
        code: "USAGE",
        message: `DSFETCH_EXTRACT_STALL_TIMEOUT: ${JSON.stringify(text)} is not a number of seconds from 0.1 to 86400`,
        hint: "unset DSFETCH_EXTRACT_STALL_TIMEOUT for the default (300 s)",
      }),
    );
  });
});
