// storage-calls.ts: each call on storage outside a download's clock gets an answer within
// the bound, or fails with STALLED; an interrupt is answered within a grace; a call given up
// on is remembered until it answers. Stand-in calls (promises) here; stage-storage-stall
// runs it inside stage() with calls really stuck in the kernel.
import { describe, expect, it } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import { StorageCalls } from "../../src/stage/storage-calls.ts";
import { stuckThreads } from "../../src/util/stuck-threads.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const never = () => new Promise<never>(() => {});

function calls(signal?: AbortSignal) {
  return new StorageCalls({ dataset: "ds", stallMs: 400, graceMs: 300, signal });
}

describe("StorageCalls", () => {
  it("a call that answers gives its value; one that fails gives its error; neither is pending", async () => {
    const storage = calls();
    await expect(storage.call("renaming a to b", async () => 7)).resolves.toBe(7);
    const boom = Object.assign(new Error("EACCES"), { code: "EACCES" });
    await expect(storage.call("renaming a to b", () => Promise.reject(boom))).rejects.toBe(boom);
    expect(storage.pending()).toEqual([]);
  });

  it("a call slower than a tick but within the bound is no stall", async () => {
    const storage = calls();
    await expect(
      storage.call("syncing /s", async () => {
        await sleep(250);
        return "synced";
      }),
    ).resolves.toBe("synced");
  });

  it("a call with no answer: STALLED naming it, pending (and noted stuck) until it answers", async () => {
    const storage = calls();
    let answer: () => void = () => {};
    const hung = new Promise<void>((resolve) => {
      answer = resolve;
    });
    const started = performance.now();
    const error = await storage
      .call("renaming /s/tmp/x/data to /s/ds", () => hung)
      .then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
    expect(error).toBeInstanceOf(DsfetchError);
    expect((error as DsfetchError).code).toBe("STALLED");
    expect((error as DsfetchError).message).toBe(
      "ds: renaming /s/tmp/x/data to /s/ds got no answer from the storage for 0.4 s",
    );
    // The bound, then the grace for the call told to stop: not the storage's whole absence.
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(storage.pending()).toEqual(["renaming /s/tmp/x/data to /s/ds"]);
    expect(stuckThreads()).toContain(
      "renaming /s/tmp/x/data to /s/ds got no answer from the storage",
    );
    answer();
    await expect.poll(() => storage.pending()).toEqual([]);
    expect(stuckThreads()).not.toContain(
      "renaming /s/tmp/x/data to /s/ds got no answer from the storage",
    );
  });

  it("a call that answers within the grace after the bound gives that answer: its effect is known", async () => {
    const storage = new StorageCalls({ dataset: "ds", stallMs: 300, graceMs: 3_000 });
    const late = storage.call("renaming /s/tmp/x/data to /s/ds", async () => {
      await sleep(900);
      return "renamed";
    });
    await expect(late).resolves.toBe("renamed");
    const failing = storage.call("renaming /s/tmp/y/data to /s/ds", async () => {
      await sleep(900);
      throw Object.assign(new Error("ENOTEMPTY"), { code: "ENOTEMPTY" });
    });
    await expect(failing).rejects.toMatchObject({ code: "ENOTEMPTY" });
    expect(storage.pending()).toEqual([]);
  });

  it("while a call given up on has no answer, later calls fail at once, naming it", async () => {
    const storage = calls();
    await expect(storage.call("renaming /s/a to /s/b", never)).rejects.toMatchObject({
      code: "STALLED",
    });
    let ran = false;
    const started = performance.now();
    await expect(
      storage.call("marking /s/b used", async () => {
        ran = true;
      }),
    ).rejects.toMatchObject({
      code: "STALLED",
      message:
        "ds: marking /s/b used was not tried: renaming /s/a to /s/b has had no answer from the storage yet",
    });
    expect(ran).toBe(false);
    expect(performance.now() - started).toBeLessThan(200);
  });

  it("an interrupt is answered within the grace, with its reason, and the call stays pending", async () => {
    const abort = new AbortController();
    const storage = new StorageCalls({
      dataset: "ds",
      stallMs: 60_000,
      graceMs: 300,
      signal: abort.signal,
    });
    const reason = new Error("SIGTERM");
    setTimeout(() => abort.abort(reason), 100);
    const started = performance.now();
    await expect(storage.call("reading /s/m.json", never)).rejects.toBe(reason);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(storage.pending()).toEqual(["reading /s/m.json"]);
  });

  it("a call that answers within the grace after an interrupt gives its answer, is not pending, and no call starts after it", async () => {
    const abort = new AbortController();
    const storage = new StorageCalls({
      dataset: "ds",
      stallMs: 60_000,
      graceMs: 2_000,
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(new Error("SIGTERM")), 50);
    await expect(
      storage.call("renaming /s/tmp/x/data to /s/ds", async () => {
        await sleep(300);
        return "renamed";
      }),
    ).resolves.toBe("renamed");
    expect(storage.pending()).toEqual([]);
    await expect(storage.call("syncing /s", async () => {})).rejects.toThrow("SIGTERM");
  });

  it("a call with a longer bound of its own (a sync) has that bound's grace: an interrupt does not give it up after a short bound's", async () => {
    const abort = new AbortController();
    // A 200 ms bound: its own grace is 200 ms; the sync's 10 s bound gives it 5 s.
    const storage = new StorageCalls({
      dataset: "ds",
      stallMs: 200,
      graceMs: 200,
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(new Error("SIGTERM")), 50);
    await expect(
      storage.call(
        "syncing /s",
        async () => {
          await sleep(700);
          return "synced";
        },
        { atLeastMs: 10_000 },
      ),
    ).resolves.toBe("synced");
    expect(storage.pending()).toEqual([]);
  });

  it("after an interrupt no call starts", async () => {
    const abort = new AbortController();
    abort.abort(new Error("SIGTERM"));
    let started = false;
    await expect(
      calls(abort.signal).call("syncing /s", async () => {
        started = true;
      }),
    ).rejects.toThrow("SIGTERM");
    expect(started).toBe(false);
  });
});
