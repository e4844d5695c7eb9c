// Standard output that cannot be written (a full disk: `> /dev/full`) ended in a Node stack
// trace and exit 1, which the README calls a bug (review, 2026-12-05). Now one line on stderr
// and exit 7 (a reader that goes away, `| head`, is still no failure: EPIPE is ignored).
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLI_ENTRY } from "../harness/cli.ts";

describe.skipIf(!existsSync("/dev/full"))("standard output that cannot be written", () => {
  it("a full disk: one line naming it on stderr, exit 7, no stack trace", () => {
    const full = openSync("/dev/full", "w");
    try {
      const ran = spawnSync(process.execPath, [CLI_ENTRY, "version"], {
        stdio: ["ignore", full, "pipe"],
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(ran.status, ran.stderr).toBe(7);
      expect(ran.stderr).toMatch(
        /^dsfetch: cannot write to standard output: ENOSPC \(.*\); what it would have printed is lost\n$/,
      );
      expect(ran.stderr).not.toMatch(/node:events|at .*\.js:\d+/);
    } finally {
      closeSync(full);
    }
  });
});
