// waitForChange: a waiter wakes when the watched directory changes, else after the period.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForChange } from "../../src/volumes/wait-for-change.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "dsfetch-wait-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("waitForChange", () => {
  it("wakes as soon as something changes in the directory, long before the period", async () => {
    const started = performance.now();
    const waiting = waitForChange(dir, 30_000);
    setTimeout(() => void writeFile(join(dir, "released"), ""), 50);
    await waiting;
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("returns after the period when nothing changes", async () => {
    let woke = false;
    await Promise.race([
      waitForChange(dir, 100).then(() => {
        woke = true;
      }),
      new Promise((resolve) => setTimeout(resolve, 10_000)),
    ]);
    expect(woke).toBe(true);
  });

  it("rejects with the signal's reason when aborted", async () => {
    const abort = new AbortController();
    const waiting = waitForChange(dir, 30_000, abort.signal);
    abort.abort(new Error("stop"));
    await expect(waiting).rejects.toThrow("stop");
  });

  it("is a plain sleep where the directory cannot be watched", async () => {
    await expect(waitForChange(join(dir, "missing"), 50)).resolves.toBeUndefined();
  });
});
