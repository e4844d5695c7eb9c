// EarlyWriteback: a `sync -f <root>` in the background after every `everyBytes` written,
// never two at once; settle() waits for the one in flight; stop() ends it; a missing
// program is no error. The program is a stand-in script that records how it was called.

import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EarlyWriteback } from "../../src/volumes/early-writeback.ts";

const dir = mkdtempSync(join(tmpdir(), "dsfetch-writeback-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in `sync` that appends its arguments to `log`, sleeps, then appends "done". */
function standIn(name: string, sleepSeconds: number): { program: string; log: string } {
  const program = join(dir, name);
  const log = join(dir, `${name}.log`);
  writeFileSync(
    program,
    `#!/bin/sh\necho "$@" >> '${log}'\nsleep ${sleepSeconds}\necho done >> '${log}'\n`,
  );
  chmodSync(program, 0o755);
  return { program, log };
}

function lines(log: string): string[] {
  return existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
}

describe("EarlyWriteback", () => {
  it("starts a sync of the root once enough bytes were written, and settle() waits for it", async () => {
    const { program, log } = standIn("counting", 0.3);
    const writeback = new EarlyWriteback("/some/attempt", { everyBytes: 100, program });
    writeback.wrote(60);
    expect(lines(log)).toEqual([]);
    writeback.wrote(40);
    // While one runs, more bytes start no second one.
    writeback.wrote(500);
    await writeback.settle();
    expect(lines(log)).toEqual(["-f /some/attempt", "done"]);
  });

  it("starts the next one after the previous ended, and none after settle()", async () => {
    const { program, log } = standIn("series", 0);
    const writeback = new EarlyWriteback("/root", { everyBytes: 10, program });
    writeback.wrote(10);
    await new Promise((resolve) => setTimeout(resolve, 300));
    writeback.wrote(10);
    await writeback.settle();
    writeback.wrote(1000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(lines(log)).toEqual(["-f /root", "done", "-f /root", "done"]);
  });

  it("stop() ends the sync in flight", async () => {
    const { program, log } = standIn("slow", 30);
    const writeback = new EarlyWriteback("/root", { everyBytes: 1, program });
    writeback.wrote(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    writeback.stop();
    await writeback.settle();
    expect(performance.now() - started).toBeLessThan(5000);
    expect(lines(log)).toEqual(["-f /root"]);
  });

  it("a program that cannot run is no error, and is not tried again", async () => {
    const program = join(dir, "appears-later");
    const log = join(dir, "appears-later.log");
    const writeback = new EarlyWriteback("/root", { everyBytes: 1, program });
    writeback.wrote(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Now it exists: a second start would run it.
    writeFileSync(program, `#!/bin/sh\necho "$@" >> '${log}'\n`);
    chmodSync(program, 0o755);
    writeback.wrote(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expect(writeback.settle()).resolves.toBeUndefined();
    expect(lines(log)).toEqual([]);
  });
});
