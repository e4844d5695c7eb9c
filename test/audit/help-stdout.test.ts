// README audit, 2026-12-07: help went to stderr (`dsfetch help | wc -c` gave 0, and
// `dsfetch --help | less` showed nothing). Help asked for goes to stdout, exit 0; usage errors
// stay on stderr, exit 2.
import { describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";

describe("help", () => {
  for (const args of [["help"], ["--help"], ["-h"], ["fetch", "--help"], ["wait", "-h"], []]) {
    it(`dsfetch ${args.join(" ")}: on stdout, exit 0, nothing on stderr`, async () => {
      const result = await runCli(args);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^dsfetch — stage verified datasets/);
      expect(result.stdout).toContain("Usage:");
      expect(result.stdout).toContain("dsfetch k8s");
      expect(result.stderr).toBe("");
    });
  }

  it("a usage error stays on stderr, exit 2, nothing on stdout", async () => {
    const result = await runCli(["fetch", "--no-such-flag"]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^dsfetch: error: .*no-such-flag.* \[USAGE\]/);
  });
});
