// releaseLeases (agent/leases.ts) when the job ends: storage that stopped answering must not
// hold the job; the removals still pending are noted as stuck, so that the CLI ends itself
// (cli/finish.ts) instead of waiting for them.
import { describe, expect, it } from "vitest";
import { releaseLeases } from "../../src/agent/leases.ts";
import { stuckThreads } from "../../src/util/stuck-threads.ts";
import type { Lease } from "../../src/volumes/usage.ts";

const lease = (release: () => Promise<void>): Lease => ({ writtenAtMs: 0, release });

describe("releaseLeases", () => {
  it("a release that never answers is given up on after the bound, and noted as stuck until it ends", async () => {
    let answer: () => void = () => {};
    const hung = new Promise<void>((resolve) => {
      answer = resolve;
    });
    const released: string[] = [];
    const started = performance.now();
    await releaseLeases(
      [
        lease(() => hung),
        lease(async () => {
          released.push("quick");
        }),
      ],
      100,
    );
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(released).toEqual(["quick"]);
    expect(stuckThreads()).toEqual(["releasing the leases of 2 datasets"]);
    // The storage answered after all: the process may exit normally again.
    answer();
    await hung;
    await new Promise((resolve) => setImmediate(resolve));
    expect(stuckThreads()).toEqual([]);
  });

  it("releases that answer in time leave nothing noted, and a failing one does not stop the others", async () => {
    const released: string[] = [];
    await releaseLeases(
      [
        lease(async () => {
          throw new Error("EIO");
        }),
        lease(async () => {
          released.push("second");
        }),
      ],
      5_000,
    );
    expect(released).toEqual(["second"]);
    expect(stuckThreads()).toEqual([]);
  });
});
