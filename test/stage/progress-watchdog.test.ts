// progress-watchdog.ts: a download under a clock. Stand-in downloads here (promises that
// report progress, finish, fail, or never settle even when told to stop, as writes stuck on
// hung storage do); stage-download-stall.test.ts runs it inside stage().
import { describe, expect, it } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import { watchProgress } from "../../src/stage/progress-watchdog.ts";
import { stuckThreads } from "../../src/util/stuck-threads.ts";

const OPTIONS = {
  stallMs: 400,
  graceMs: 300,
  dataset: "ds",
  writing: "/storage/ds/file.bin",
  bytes: 1 << 20,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("watchProgress", () => {
  it("a download that keeps progressing runs past the bound and gives its result", async () => {
    const result = await watchProgress(
      async (_signal, progressed) => {
        for (let i = 0; i < 12; i++) {
          await sleep(100);
          progressed(1000);
        }
        return "done";
      },
      // The bound well above the steps: timers on a loaded machine run late.
      { ...OPTIONS, stallMs: 1000 },
    );
    expect(result).toBe("done");
  });

  it("once every byte is in, the clock stops: a long tail (hashing, syncing) is no stall", async () => {
    const result = await watchProgress(async (_signal, progressed) => {
      progressed(OPTIONS.bytes);
      await sleep(1200);
      return "done";
    }, OPTIONS);
    expect(result).toBe("done");
  });

  it("a time this thread did not run (busy, or the process stopped) is no stall", async () => {
    const result = await watchProgress(async (_signal, progressed) => {
      progressed(1);
      await sleep(50);
      // Blocks the thread past the bound, as SIGSTOP or a frozen cgroup would stop it; then
      // lets the clock's (late) ticks run before the next bytes come.
      const until = performance.now() + 1500;
      while (performance.now() < until) {}
      await sleep(250);
      progressed(1);
      await sleep(100);
      return "done";
    }, OPTIONS);
    expect(result).toBe("done");
  });

  it("a download's own error passes through unchanged", async () => {
    const boom = new Error("boom");
    await expect(watchProgress(() => Promise.reject(boom), OPTIONS)).rejects.toBe(boom);
  });

  it("no progress for the bound: STALLED naming the file, the download told to stop; not noted stuck when it stops", async () => {
    const before = stuckThreads().length;
    let stopped = false;
    const error = await watchProgress(
      (signal) =>
        new Promise((_, reject) => {
          signal.addEventListener("abort", () => {
            stopped = true;
            reject(new Error("aborted"));
          });
        }),
      OPTIONS,
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error).toMatchObject({ code: "STALLED", dataset: "ds", exitCode: 10 });
    expect((error as DsfetchError).message).toBe(
      "ds: the download made no progress for 0.4 s (no byte received, no retry: the writes to /storage/ds/file.bin did not finish, or the store sent nothing)",
    );
    expect(stopped).toBe(true);
    expect(stuckThreads().length).toBe(before);
  });

  it("a download that cannot stop (writes stuck in the kernel): STALLED after the bound and the grace, noted stuck", async () => {
    const started = performance.now();
    const error = await watchProgress(() => new Promise(() => {}), OPTIONS).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: "STALLED" });
    expect(performance.now() - started).toBeGreaterThanOrEqual(650);
    expect(stuckThreads().at(-1)).toBe("writing /storage/ds/file.bin");
  });

  it("stuck writes that end after all (the storage came back): the note goes, the process may exit normally", async () => {
    let finish: (() => void) | undefined;
    const error = await watchProgress(
      () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
      { ...OPTIONS, writing: "/storage/ds/thawed.bin" },
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "STALLED" });
    expect(stuckThreads()).toContain("writing /storage/ds/thawed.bin");
    finish?.();
    await expect.poll(() => stuckThreads()).not.toContain("writing /storage/ds/thawed.bin");
  });

  it("an interrupt is answered with its reason while the download cannot stop, after the grace", async () => {
    const abort = new AbortController();
    const reason = new Error("SIGTERM");
    setTimeout(() => abort.abort(reason), 100);
    const before = stuckThreads().length;
    const error = await watchProgress(
      async (_signal, progressed) => {
        // Progressing, then stuck: only the interrupt ends it.
        progressed(1);
        return new Promise<never>(() => {});
      },
      { ...OPTIONS, stallMs: 60_000, signal: abort.signal },
    ).catch((e: unknown) => e);
    expect(error).toBe(reason);
    expect(stuckThreads().length).toBe(before + 1);
  });

  it("an interrupt as the download finishes is still an interrupt, never a success", async () => {
    const abort = new AbortController();
    const reason = new Error("SIGINT");
    const error = await watchProgress(
      (signal) =>
        new Promise((resolve) => {
          // Finishes when told to stop, as a download whose last write just completed.
          signal.addEventListener("abort", () => resolve("done"));
          setTimeout(() => abort.abort(reason), 50);
        }),
      { ...OPTIONS, signal: abort.signal },
    ).catch((e: unknown) => e);
    expect(error).toBe(reason);
  });
  it("an answer due when a busy thread comes back from past the grace is still the answer (the grace is decided after pending I/O)", async () => {
    const { stat } = await import("node:fs");
    const result = await watchProgress(
      (signal) =>
        new Promise<string>((resolve) => {
          signal.addEventListener("abort", () => {
            // The work's answer comes from the thread pool (as a rename's does)...
            stat(".", () => resolve("renamed"));
            // ...while this thread is busy past the grace, once the grace's timer is set.
            queueMicrotask(() => {
              const until = performance.now() + 400;
              while (performance.now() < until) {
                // busy
              }
            });
          });
        }),
      { ...OPTIONS, stallMs: 100, graceMs: 100, answerWithinGrace: true },
    );
    expect(result).toBe("renamed");
  });
});
