// README audit, 2026-12-07: the README says the sidecar refuses a --ready-file path it cannot
// write (exit 2), but a path whose directory did not exist had its directories made: a
// mistyped path was never caught, and the workers' `wait --ready-file <the right path>` waited
// for their whole timeout. A missing directory is refused now, and nothing is made.
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareReadyFile } from "../../src/agent/ready-file.ts";
import { runCli } from "../harness/cli.ts";
import { freePort } from "../harness/minio-binary.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-audit-ready-dir-"));
  bucket = await createBucket("audit-ready-dir");
  await putObject(bucket, "small/labels.txt", "cat\ndog\n");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function sidecar(readyFile: string, stdin: string) {
  const storage = await mkdtemp(join(root, "storage-"));
  const result = await runCli(
    [
      "sidecar",
      "--datasets",
      "-",
      "--storage-root",
      storage,
      "--team",
      "ml",
      "--mount-root",
      join(storage, "mnt"),
      "--listen",
      `127.0.0.1:${await freePort()}`,
      "--ready-file",
      readyFile,
    ],
    { env: testEnv(), stdin, timeoutMs: 30_000 },
  );
  return { ...result, storage };
}

describe("--ready-file in a directory that does not exist", () => {
  it("the sidecar refuses it before staging: exit 2, USAGE, naming the directory; makes nothing", async () => {
    const missing = join(root, "typo", "shared");
    const readyFile = join(missing, "ready.json");
    const { code, stderr, storage } = await sidecar(
      readyFile,
      JSON.stringify([{ uri: `s3://${bucket}/small/`, name: "labels" }]),
    );
    expect(code, stderr).toBe(2);
    expect(stderr).toContain(
      `dsfetch: error: --ready-file ${readyFile}: its directory ${missing} does not exist [USAGE]`,
    );
    expect(stderr).toContain(`hint: create it (mkdir -p ${missing}) or fix the path`);
    expect(stderr).not.toContain("bug in dsfetch");
    expect(existsSync(join(root, "typo"))).toBe(false);
    // Nothing was staged.
    expect(await readdir(storage)).toEqual([]);
  });

  it("a sidecar that fails before staging (datasets that do not parse) makes no directory to say so", async () => {
    const readyFile = join(root, "typo-early", "ready.json");
    const { code, stderr } = await sidecar(readyFile, '[{"ur": "s3://b/x"}]');
    expect(code, stderr).toBe(2);
    expect(existsSync(join(root, "typo-early"))).toBe(false);
  });

  it("prepareReadyFile: USAGE, nothing made; an existing directory is fine", async () => {
    const readyFile = join(root, "nowhere", "ready.json");
    await expect(prepareReadyFile(readyFile)).rejects.toMatchObject({
      code: "USAGE",
      message: `--ready-file ${readyFile}: its directory ${join(root, "nowhere")} does not exist`,
    });
    expect(existsSync(join(root, "nowhere"))).toBe(false);
    await expect(prepareReadyFile(join(root, "ready.json"))).resolves.toBeUndefined();
  });
});
