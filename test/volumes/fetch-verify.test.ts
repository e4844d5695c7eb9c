// `fetch --verify`: a staged copy is read again against its recorded digests before it is
// reused, and a copy whose bytes were changed in place (size and times kept: the seal cannot
// see it) is staged again. Without it, a copy `list --verify` found damaged was reused by
// every later fetch without a word (second exploratory tester, 2026-12-08).
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, open, readFile, rm, stat, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
const body = randomBytes(256 * 1024);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-fetch-verify-"));
  bucket = await createBucket("fetch-verify");
  await putObject(bucket, "weights.bin", body);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("fetch --verify", () => {
  it("reuses an intact copy, stages a copy changed in place again; plain fetch reuses it as before", async () => {
    const storage = await mkdtemp(join(root, "storage-"));
    const fetch = (...flags: string[]) =>
      runCli(
        ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json", ...flags],
        {
          env: testEnv(),
          stdin: JSON.stringify([{ uri: `s3://${bucket}/weights.bin`, name: "weights" }]),
        },
      );
    const first = await fetch();
    expect(first.code, first.stderr).toBe(0);
    const dir = join(storage, "ml", "data", "weights");
    const path = join(dir, "weights.bin");
    const cached = (stdout: string) => JSON.parse(stdout).datasets[0].cached as boolean;

    const intact = await fetch("--verify");
    expect(intact.code, intact.stderr).toBe(0);
    expect(cached(intact.stdout)).toBe(true);

    // A byte changed in place, the size and the times kept.
    const before = await stat(path);
    await chmod(dir, 0o755);
    await chmod(path, 0o644);
    const handle = await open(path, "r+");
    await handle.write(Buffer.from([body[1000] === 0 ? 1 : 0]), 0, 1, 1000);
    await handle.close();
    await chmod(path, 0o444);
    await chmod(dir, 0o555);
    await utimes(path, before.atime, before.mtime);

    const plain = await fetch();
    expect(plain.code, plain.stderr).toBe(0);
    expect(cached(plain.stdout)).toBe(true);
    expect((await readFile(path)).equals(body)).toBe(false);

    const verified = await fetch("--verify");
    expect(verified.code, verified.stderr).toBe(0);
    expect(cached(verified.stdout)).toBe(false);
    expect(verified.stderr).toMatch(
      /was changed after it was published .*: 1 file no longer matches its recorded digest \(weights\.bin: expected md5:/,
    );
    expect(
      (await readFile(join(storage, "ml", "data", "weights", "weights.bin"))).equals(body),
    ).toBe(true);
    const again = await fetch("--verify");
    expect(cached(again.stdout)).toBe(true);
  });
});
