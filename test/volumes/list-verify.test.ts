// `dsfetch list --verify`: every file of each published dataset read again and compared with
// the digest its manifest recorded (a folder's objects' MD5s, an archive's files' CRC-32s, a
// multipart object's ETag with its part size: it was unchecked until 2026-12-08, the large
// files exactly, second exploratory tester). Bytes changed in place
// with the size and times kept, which `list --check` cannot see, are found: exit 5.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, open, rm, stat, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tar, file as tarFile } from "../archive/tar-helpers.ts";
import { runCli } from "../harness/cli.ts";
import { createBucket, putMultipart, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let storage: string;
const MiB = 1024 * 1024;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-list-verify-"));
  storage = join(root, "storage");
  await mkdir(storage);
  const bucket = await createBucket("verify");
  await Promise.all([
    putObject(bucket, "folder/a.txt", "alpha\n"),
    putObject(bucket, "folder/b.txt", "beta\n"),
    putObject(bucket, "folder/sub/c.txt", "gamma\n"),
    putObject(
      bucket,
      "set.tar.gz",
      gzipSync(tar(tarFile("one.bin", randomBytes(64 * 1024)), tarFile("two.txt", "two\n"))),
    ),
    putMultipart(bucket, "big.bin", randomBytes(11 * MiB), 5 * MiB),
  ]);
  const fetched = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--no-fallback"],
    {
      env: testEnv(),
      stdin: JSON.stringify([
        { uri: `s3://${bucket}/folder/`, name: "folder" },
        { uri: `s3://${bucket}/set.tar.gz` },
        { uri: `s3://${bucket}/big.bin`, name: "big" },
      ]),
      timeoutMs: 120_000,
    },
  );
  expect(fetched.code, fetched.stderr).toBe(0);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const list = (...flags: string[]) =>
  runCli(["list", "--storage-root", storage, "--team", "ml", ...flags], { env: testEnv() });

interface Listed {
  name: string;
  state?: string;
  content?: { checked: number; unchecked: number; mismatched: number; examples: string[] };
}
const byName = (stdout: string) =>
  Object.fromEntries(
    (JSON.parse(stdout) as { datasets: Listed[] }).datasets.map((entry) => [entry.name, entry]),
  );

describe("list --verify", () => {
  it("intact datasets: every file checked, the multipart object by its ETag, exit 0", async () => {
    const run = await list("--verify", "--json");
    expect(run.code, run.stderr).toBe(0);
    const entries = byName(run.stdout);
    expect(entries.folder?.content).toMatchObject({ checked: 3, unchecked: 0, mismatched: 0 });
    expect(entries.set?.content).toMatchObject({ checked: 2, unchecked: 0, mismatched: 0 });
    expect(entries.big?.content).toMatchObject({ checked: 1, unchecked: 0, mismatched: 0 });
    expect(entries.set?.state).toBe("intact");
  });

  it("a file rewritten in place, its size and times kept: --check does not see it changed, --verify exit 5 naming it", async () => {
    const dir = join(storage, "ml", "data", "set");
    const path = join(dir, "one.bin");
    const before = await stat(path);
    await chmod(dir, 0o755);
    await chmod(path, 0o644);
    const handle = await open(path, "r+");
    await handle.write(Buffer.from("changed!"), 0, 8, 1000);
    await handle.close();
    await chmod(path, 0o444);
    await chmod(dir, 0o555);
    await utimes(path, before.atime, before.mtime);

    const checked = await list("--check", "--json");
    expect(checked.code, checked.stderr).toBe(0);
    // Not "changed": fetch would reuse it (with a warning about its times at most).
    expect(["intact", "times"]).toContain(byName(checked.stdout).set?.state);

    const verified = await list("--verify", "--json");
    expect(verified.code, verified.stderr).toBe(5);
    const set = byName(verified.stdout).set;
    expect(set?.content).toMatchObject({ checked: 2, mismatched: 1 });
    expect(set?.content?.examples).toEqual([
      expect.stringMatching(/^one\.bin: expected crc32:\S+, found crc32:\S+$/),
    ]);
    expect(byName(verified.stdout).folder?.content?.mismatched).toBe(0);

    // The multipart object (11 MiB in 5 MiB parts): a byte of its second part changed.
    const big = join(storage, "ml", "data", "big", "big.bin");
    const bigBefore = await stat(big);
    await chmod(join(storage, "ml", "data", "big"), 0o755);
    await chmod(big, 0o644);
    const bigHandle = await open(big, "r+");
    await bigHandle.write(Buffer.from([0x5a]), 0, 1, 7 * MiB);
    await bigHandle.close();
    await chmod(big, 0o444);
    await chmod(join(storage, "ml", "data", "big"), 0o555);
    await utimes(big, bigBefore.atime, bigBefore.mtime);
    const again = byName((await list("--verify", "--json")).stdout).big;
    expect(again?.content).toMatchObject({ checked: 1, mismatched: 1 });
    expect(again?.content?.examples).toEqual([
      expect.stringMatching(
        /^big\.bin: expected md5parts:5242880:[0-9a-f]{32}-3, found md5parts:5242880:[0-9a-f]{32}-3$/,
      ),
    ]);

    const human = await list("--verify");
    expect(human.code).toBe(5);
    expect(human.stderr).toMatch(/CONTENT/);
    expect(human.stderr).toMatch(
      /set: 1 file of .*\/set is not what was published \(one\.bin: expected crc32:/,
    );
  });
});
