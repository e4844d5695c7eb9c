// EarlyWriteback: a `sync -f <root>` after every `everyBytes` written, run by one shell
// started once, never two at once; settle() waits for the one in flight and ends the shell;
// stop() ends it at once; a missing program or shell is no error. The programs are stand-in
// scripts that record how they were called.

import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EarlyWriteback } from "../../src/volumes/early-writeback.ts";
import { childCommands } from "../harness/children.ts";

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

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("EarlyWriteback", () => {
  it("syncs the root once enough bytes were written, one at a time; settle() waits for it", async () => {
    const { program, log } = standIn("counting", 0.3);
    const writeback = new EarlyWriteback("/some/attempt", { everyBytes: 100, program });
    writeback.wrote(60);
    await pause(100);
    expect(lines(log)).toEqual([]);
    writeback.wrote(40);
    // While one runs, more bytes start no second one.
    writeback.wrote(500);
    await writeback.settle();
    expect(lines(log)).toEqual(["-f /some/attempt", "done"]);
    expect(childCommands()).not.toMatch(/\bsh\b/);
  });

  it("starts the next one after the previous ended, and none after settle()", async () => {
    const { program, log } = standIn("series", 0);
    const writeback = new EarlyWriteback("/root", { everyBytes: 10, program });
    writeback.wrote(10);
    await pause(300);
    writeback.wrote(10);
    await writeback.settle();
    writeback.wrote(1000);
    await pause(200);
    expect(lines(log)).toEqual(["-f /root", "done", "-f /root", "done"]);
  });

  it("starts its shell at once for a large download, and never for a small one", async () => {
    const { program, log } = standIn("sized", 0);
    const large = new EarlyWriteback("/root", { everyBytes: 100, expectedBytes: 100, program });
    await pause(100);
    expect(childCommands()).toMatch(/\bsh\b/);
    await large.settle();
    expect(childCommands()).not.toMatch(/\bsh\b/);
    const small = new EarlyWriteback("/root", { everyBytes: 100, expectedBytes: 99, program });
    small.wrote(1000);
    await pause(200);
    await small.settle();
    expect(lines(log)).toEqual([]);
  });

  it("stop() ends the shell at once, even with a sync in flight", async () => {
    const { program, log } = standIn("slow", 30);
    const writeback = new EarlyWriteback("/root", { everyBytes: 1, program });
    writeback.wrote(1);
    await pause(200);
    const started = performance.now();
    writeback.stop();
    await writeback.settle();
    expect(performance.now() - started).toBeLessThan(5000);
    expect(lines(log)).toEqual(["-f /root"]);
    expect(childCommands()).not.toMatch(/\bsh\b/);
  });

  it("a missing sync program is no error", async () => {
    const writeback = new EarlyWriteback("/root", {
      everyBytes: 1,
      program: join(dir, "no-such-sync"),
    });
    writeback.wrote(1);
    await pause(100);
    writeback.wrote(1);
    await expect(writeback.settle()).resolves.toBeUndefined();
  });

  it("a shell that cannot run is no error, and is not tried again", async () => {
    const shell = join(dir, "appears-later");
    const log = join(dir, "appears-later.log");
    const writeback = new EarlyWriteback("/root", { everyBytes: 1, shell });
    writeback.wrote(1);
    await pause(200);
    // Now it exists: a second start would run it.
    writeFileSync(shell, `#!/bin/sh\necho "$@" >> '${log}'\n`);
    chmodSync(shell, 0o755);
    writeback.wrote(1);
    await pause(300);
    await expect(writeback.settle()).resolves.toBeUndefined();
    expect(lines(log)).toEqual([]);
  });
});
