// Tuning from the environment: DSFETCH_EXTRACT_STALL_TIMEOUT (the extraction watchdog's bound)
// and DSFETCH_FILE_WRITES (how an archive's files are written).
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

describe("DSFETCH_STORAGE_TIMEOUT", () => {
  it("defaults to 30 s and takes seconds", () => {
    expect(resolveTuning({}).storageTimeoutMs).toBe(30_000);
    expect(resolveTuning({ DSFETCH_STORAGE_TIMEOUT: "1.5" }).storageTimeoutMs).toBe(1500);
  });

  it.each(["0", "30s", "86401"])("%j is a USAGE error naming the variable", (text) => {
    expect(() => resolveTuning({ DSFETCH_STORAGE_TIMEOUT: text })).toThrow(
      expect.objectContaining({
        code: "USAGE",
        message: `DSFETCH_STORAGE_TIMEOUT: ${JSON.stringify(text)} is not a number of seconds from 0.1 to 86400`,
      }),
    );
  });
});

describe("DSFETCH_MAIN_THREAD_TIMEOUT", () => {
  it("defaults to 300 s and takes seconds, from 1", () => {
    expect(resolveTuning({}).mainThreadTimeoutMs).toBe(300_000);
    expect(resolveTuning({ DSFETCH_MAIN_THREAD_TIMEOUT: "1" }).mainThreadTimeoutMs).toBe(1000);
    expect(resolveTuning({ DSFETCH_MAIN_THREAD_TIMEOUT: "2.5" }).mainThreadTimeoutMs).toBe(2500);
  });

  it.each(["0.5", "0", "5m", "86401"])("%j is a USAGE error naming the variable", (text) => {
    expect(() => resolveTuning({ DSFETCH_MAIN_THREAD_TIMEOUT: text })).toThrow(
      expect.objectContaining({
        code: "USAGE",
        message: `DSFETCH_MAIN_THREAD_TIMEOUT: ${JSON.stringify(text)} is not a number of seconds from 1 to 86400`,
      }),
    );
  });
});

describe("DSFETCH_FILE_WRITES", () => {
  it("defaults to auto; takes auto, serial or parallel", () => {
    expect(resolveTuning({}).fileWrites).toBe("auto");
    expect(resolveTuning({ DSFETCH_FILE_WRITES: "" }).fileWrites).toBe("auto");
    for (const mode of ["auto", "serial", "parallel"]) {
      expect(resolveTuning({ DSFETCH_FILE_WRITES: mode }).fileWrites).toBe(mode);
    }
  });

  it.each(["fast", "Parallel", " serial", "1"])(
    "%j is a USAGE error naming the variable",
    (text) => {
      expect(() => resolveTuning({ DSFETCH_FILE_WRITES: text })).toThrow(
        expect.objectContaining({
          code: "USAGE",
          message: `DSFETCH_FILE_WRITES: ${JSON.stringify(text)} is not one of auto, serial, parallel`,
          hint: "unset DSFETCH_FILE_WRITES for the default (auto)",
        }),
      );
    },
  );
});

describe("DSFETCH_LOCK_STALE", () => {
  it("defaults to 120 s and takes seconds from 5 (a value under 5 was taken as 5 without a word)", () => {
    expect(resolveTuning({}).lock.staleMs).toBe(120_000);
    expect(resolveTuning({ DSFETCH_LOCK_STALE: "5" }).lock.staleMs).toBe(5_000);
    expect(resolveTuning({ DSFETCH_LOCK_STALE: "7.5" }).lock.staleMs).toBe(7_500);
    for (const text of ["1", "0.1", "4.99", "3601", "-5", "2m"]) {
      expect(() => resolveTuning({ DSFETCH_LOCK_STALE: text })).toThrow(
        expect.objectContaining({
          code: "USAGE",
          message: `DSFETCH_LOCK_STALE: ${JSON.stringify(text)} is not a number of seconds from 5 to 3600`,
        }),
      );
    }
  });
});

describe("DSFETCH_RETRIES", () => {
  it("defaults to 6 and takes a whole number from 0 to 100", () => {
    expect(resolveTuning({}).retries).toBe(6);
    expect(resolveTuning({ DSFETCH_RETRIES: "0" }).retries).toBe(0);
    expect(resolveTuning({ DSFETCH_RETRIES: "100" }).retries).toBe(100);
    for (const text of ["-1", "101", "2.5", "many"]) {
      expect(() => resolveTuning({ DSFETCH_RETRIES: text })).toThrow(
        `DSFETCH_RETRIES: ${JSON.stringify(text)} is not a whole number from 0 to 100`,
      );
    }
  });
});
