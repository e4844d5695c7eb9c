// Streaming a large archive starts the write-back of the expanded tree during the download
// (volumes/early-writeback.ts): `sync -f <attempt>` runs before the one that precedes the
// publish. A small archive has only that last one. `sync` is a stand-in first on PATH that
// logs its arguments and runs the real one.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findProgram } from "../../src/archive/decompress.ts";
import { runCli } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";
import { tar, file as tarFile } from "./tar-helpers.ts";

let root: string;
let bin: string;
let log: string;
let bucket: string;
const MiB = 1024 * 1024;
// 72 MiB of files: more than one early sync's worth (64 MiB) of downloaded bytes.
const bigFiles = Array.from(
  { length: 9 },
  (_, i) => [`part-${i}.bin`, randomBytes(8 * MiB)] as const,
);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-writeback-fetch-"));
  bin = join(root, "bin");
  log = join(root, "sync.log");
  await mkdir(bin);
  const realSync = findProgram("sync");
  if (realSync === undefined) throw new Error("the tests need the sync program (coreutils)");
  await writeFile(join(bin, "sync"), `#!/bin/sh\necho "$@" >> '${log}'\nexec '${realSync}' "$@"\n`);
  await chmod(join(bin, "sync"), 0o755);
  bucket = await createBucket("writeback");
  await putObject(bucket, "big.tar", tar(...bigFiles.map(([name, data]) => tarFile(name, data))));
  await putObject(bucket, "small.tar", tar(tarFile("a.txt", "small\n")));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fetchLogged(key: string, name: string) {
  await rm(log, { force: true });
  const storage = await mkdtemp(join(root, "storage-"));
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
    {
      env: { ...testEnv(), PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}` },
      stdin: JSON.stringify([{ name, uri: `s3://${bucket}/${key}` }]),
      timeoutMs: 120_000,
    },
  );
  const calls = (await readFile(log, "utf8").catch(() => "")).trim().split("\n");
  return { result, calls, data: join(storage, "ml", "data", name) };
}

describe("early write-back of a streamed archive", () => {
  it("syncs the attempt during a 72 MiB download, then once more before publishing", async () => {
    const { result, calls, data } = await fetchLogged("big.tar", "big");
    expect(result.code, result.stderr).toBe(0);
    for (const [name, bytes] of bigFiles) {
      expect((await readFile(join(data, name))).equals(bytes), name).toBe(true);
    }
    expect(calls.length).toBeGreaterThanOrEqual(2);
    for (const call of calls) expect(call).toMatch(/^-f \/.*\/ml\/data\/\.dsfetch\/tmp\/big\./);
  });

  it("a small archive gets only the sync before publishing", async () => {
    const { result, calls, data } = await fetchLogged("small.tar", "small");
    expect(result.code, result.stderr).toBe(0);
    expect(await readFile(join(data, "a.txt"), "utf8")).toBe("small\n");
    expect(calls).toHaveLength(1);
  });
});
