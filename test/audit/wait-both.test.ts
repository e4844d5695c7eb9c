// README audit, 2026-12-07: `wait` given both --ready-file and --url waits for both to say
// ready (README "Sidecar for multi-worker jobs"), but said "waiting for <file> or <url>" and
// "<file> or <url> did not say ready within …". It says "and" now.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { freePort } from "../harness/minio-binary.ts";

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-audit-wait-"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("wait --ready-file --url", () => {
  it('says "and" when both are given: both must say ready', async () => {
    const file = join(root, "ready.json");
    // Nothing listens there: neither says ready.
    const url = `http://127.0.0.1:${await freePort()}/readyz`;
    const result = await runCli(["wait", "--ready-file", file, "--url", url, "--timeout", "1s"]);
    expect(result.code).toBe(9);
    expect(result.stderr).toContain(`wait: waiting for ${file} and ${url}\n`);
    expect(result.stderr).toContain(`${file} and ${url} did not say ready within 1s`);
    expect(result.stderr).not.toContain(" or ");
  });

  it("one of them alone is named alone", async () => {
    const file = join(root, "alone.json");
    const result = await runCli(["wait", "--ready-file", file, "--timeout", "1s"]);
    expect(result.code).toBe(9);
    expect(result.stderr).toContain(`wait: waiting for ${file}\n`);
    expect(result.stderr).toContain(`wait: ${file} did not say ready within 1s`);
  });
});
