// Archive datasets end to end: `dsfetch fetch` of archives made by the system's real tools,
// expanded into the dataset directory (the archive itself not kept), and hostile or broken
// archives failing with nothing published.
import { execFileSync } from "node:child_process";
import { randomBytes, randomFillSync } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { createBucket, putMultipart, putObject, testEnv } from "../harness/s3.ts";
import { standInXzScript } from "../harness/stand-in-xz.ts";
import { END, tar, file as tarFile, tarHeader } from "./tar-helpers.ts";

let root: string;
let source: string;
let archives: string;
let bucket: string;

/** Every file under a directory with its contents, for byte-exact comparison. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[path.slice(dir.length + 1)] = (await readFile(path)).toString("base64");
  }
  return out;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-archives-"));
  source = join(root, "source");
  archives = join(root, "archives");
  await mkdir(join(source, "images", "train"), { recursive: true });
  await mkdir(archives);
  for (let i = 0; i < 40; i++) {
    await writeFile(join(source, "images", "train", `img-${i}.bin`), randomBytes(1000 + i * 97));
  }
  await writeFile(join(source, "labels.csv"), "id,label\n1,cat\n2,dog\n".repeat(500));
  await writeFile(join(source, "empty.txt"), "");
  const run = (command: string, args: string[]) =>
    execFileSync(command, args, { cwd: source, stdio: "ignore" });
  run("tar", ["-cf", join(archives, "ds.tar"), "."]);
  run("tar", ["-czf", join(archives, "ds.tar.gz"), "."]);
  run("tar", ["-cjf", join(archives, "ds.tar.bz2"), "."]);
  run("tar", ["-cJf", join(archives, "ds.tar.xz"), "."]);
  run("zip", ["-qr", join(archives, "ds.zip"), "."]);
  run("tar", ["-czf", join(archives, "empty.tar.gz"), "-T", "/dev/null"]);
  bucket = await createBucket("archives");
  const copies: Array<[string, string]> = [
    ["ds.zip", "a/zipped.zip"],
    ["ds.tar", "a/plain.tar"],
    ["ds.tar.bz2", "a/bzipped.tar.bz2"],
    ["ds.tar.gz", "a/gzipped.tar.gz"],
    ["ds.tar.gz", "a/gz2gzip.tar.gz2"],
    ["ds.tar.bz2", "a/gz2bzip.tar.gz2"],
    ["ds.tar.xz", "a/xzed.tar.xz"],
    ["ds.tar.bz2", "a/short.tbz"],
    ["ds.tar.bz2", "a/short2.tbz2"],
    ["ds.tar.gz", "a/short.tgz"],
    ["ds.tar.xz", "a/short.txz"],
    ["ds.tar.gz", "a/UPPER.TAR.GZ"],
    ["empty.tar.gz", "a/nothing.tar.gz"],
  ];
  for (const [local, key] of copies)
    await putObject(bucket, key, await readFile(join(archives, local)));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fetch(datasets: unknown, env: Record<string, string> = {}, flags: string[] = []) {
  const storage = await mkdtemp(join(root, "storage-"));
  const ephemeral = join(storage, "ephemeral");
  const result = await runCli(
    [
      "fetch",
      "--datasets",
      "-",
      "--storage-root",
      storage,
      "--team",
      "ml",
      "--ephemeral-root",
      ephemeral,
      "--json",
      ...flags,
    ],
    { env: { ...testEnv(), ...env }, stdin: JSON.stringify(datasets), timeoutMs: 120_000 },
  );
  const json = result.stdout === "" ? undefined : JSON.parse(result.stdout);
  return { ...result, json, data: join(storage, "ml", "data"), ephemeral };
}

async function nothingPublished(data: string): Promise<void> {
  const entries = await readdir(data).catch(() => [] as string[]);
  expect(entries.filter((name) => !name.startsWith("."))).toEqual([]);
  expect(await readdir(join(data, ".dsfetch", "tmp")).catch(() => [])).toEqual([]);
  expect(await readdir(join(data, ".dsfetch", "manifests")).catch(() => [])).toEqual([]);
}

describe("archive datasets: every extension, archives made by real tools", () => {
  const keys = [
    ["zipped.zip", "zipped"],
    ["plain.tar", "plain"],
    ["bzipped.tar.bz2", "bzipped"],
    ["gzipped.tar.gz", "gzipped"],
    ["gz2gzip.tar.gz2", "gz2gzip"],
    ["gz2bzip.tar.gz2", "gz2bzip"],
    ["xzed.tar.xz", "xzed"],
    ["short.tbz", "short"],
    ["short2.tbz2", "short2"],
    ["short.tgz", "short-tgz"],
    ["short.txz", "short-txz"],
    ["UPPER.TAR.GZ", "UPPER"],
  ] as const;
  /**
   * Every extension's archive staged by one `dsfetch fetch` (a CLI process costs ~0.3 CPU-s;
   * each dataset's result is its own in --json), run once for the tests below.
   */
  let everyExtension: ReturnType<typeof fetch> | undefined;
  const stageEveryExtension = () => {
    everyExtension ??= fetch([
      ...keys.map(([key, name]) => ({
        uri: `s3://${bucket}/a/${key}`,
        ...(name.startsWith("short-") ? { name } : {}),
      })),
      { uri: `s3://${bucket}/a/nothing.tar.gz` },
    ]);
    return everyExtension;
  };
  for (const [key, name] of keys) {
    it(`${key} is expanded into the dataset directory, byte-exact`, async () => {
      const { code, json, data, stderr } = await stageEveryExtension();
      expect(code, stderr).toBe(0);
      const staged = json.datasets.find((dataset: { name: string }) => dataset.name === name);
      expect(staged).toMatchObject({ name, kind: "object", verification: { md5: 1 } });
      const dir = join(data, name);
      expect(await tree(dir)).toEqual(await tree(source));
      const manifest = JSON.parse(
        await readFile(join(data, ".dsfetch", "manifests", `${name}.json`), "utf8"),
      );
      expect(manifest.files.length).toBe(42);
      expect(manifest.files.map((f: { path: string }) => f.path).sort()).toEqual(
        Object.keys(await tree(source)).sort(),
      );
      expect(await readdir(join(data, ".dsfetch", "tmp"))).toEqual([]);
    });
  }

  it("an archive of no file: published empty, and said (a job finding nothing was the first to tell)", async () => {
    const { code, json, data, stderr } = await stageEveryExtension();
    expect(code, stderr).toBe(0);
    expect(json.datasets.find((d: { name: string }) => d.name === "nothing")).toMatchObject({
      cached: false,
      bytes: 45,
    });
    expect(await readdir(join(data, "nothing"))).toEqual([]);
    expect(stderr).toContain(
      `nothing: warning: the archive s3://${bucket}/a/nothing.tar.gz holds no file: the dataset is published without any`,
    );
    // Said of that one alone.
    expect(stderr.match(/holds no file/g)).toHaveLength(1);
  });

  it("DSFETCH_FILE_WRITES=parallel (as on network storage): byte-exact, the same manifest", async () => {
    const parallel = [
      ["plain.tar", "plain"],
      ["gzipped.tar.gz", "gzipped"],
      ["zipped.zip", "zipped"],
    ] as const;
    // One run, three datasets: each says its own count.
    const { code, data, stderr } = await fetch(
      parallel.map(([key]) => ({ uri: `s3://${bucket}/a/${key}` })),
      { DSFETCH_FILE_WRITES: "parallel" },
    );
    expect(code, stderr).toBe(0);
    for (const [, name] of parallel) {
      // The regular files under 1 MiB among the 42 (a tar's links are made once those are on
      // disk; a zip has none).
      expect(stderr).toMatch(
        new RegExp(
          `${name}: \\d+ of 42 files written in parallel \\(DSFETCH_FILE_WRITES=parallel\\)`,
        ),
      );
      expect(await tree(join(data, name))).toEqual(await tree(source));
      const manifest = JSON.parse(
        await readFile(join(data, ".dsfetch", "manifests", `${name}.json`), "utf8"),
      );
      expect(manifest.files.length).toBe(42);
    }
    const wrong = await fetch([{ uri: `s3://${bucket}/a/plain.tar` }], {
      DSFETCH_FILE_WRITES: "fast",
    });
    expect(wrong.code).toBe(2);
    expect(wrong.json.error).toMatchObject({
      code: "USAGE",
      message: 'DSFETCH_FILE_WRITES: "fast" is not one of auto, serial, parallel',
    });
    await nothingPublished(wrong.data);
  });

  it("verifies a multipart archive (5 MiB parts) while it streams", async () => {
    const big = join(root, "big");
    await mkdir(big);
    await writeFile(join(big, "blob.bin"), randomBytes(11 * 1024 * 1024));
    const archive = join(root, "big.tar");
    execFileSync("tar", ["-cf", archive, "-C", big, "."]);
    const put = await putMultipart(bucket, "a/big.tar", await readFile(archive), 5 * 1024 * 1024);
    expect(put.etag).toMatch(/-3$/);
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/a/big.tar` }], {
      DSFETCH_RANGE_SIZE: "1Mi",
    });
    expect(code).toBe(0);
    expect(json.datasets[0].verification).toEqual({ "multipart-md5": 1 });
    expect(
      (await readFile(join(data, "big", "blob.bin"))).equals(await readFile(join(big, "blob.bin"))),
    ).toBe(true);
  });
});

/**
 * What tar(...files.map(tarFile)) makes (a header, the data padded to 512 bytes, per file; two
 * zero blocks at the end), its files' random bytes written in place: each file's data is a
 * view into the archive. Made by tar() of 80 MiB, three copies of it took ~1.5 CPU-s.
 */
function randomTar(entries: { name: string; size: number }[]): {
  archive: Buffer;
  files: { name: string; data: Buffer }[];
} {
  const padded = (size: number) => Math.ceil(size / 512) * 512;
  const total = entries.reduce((sum, entry) => sum + 512 + padded(entry.size), END.length);
  const archive = Buffer.alloc(total);
  const files: { name: string; data: Buffer }[] = [];
  let at = 0;
  for (const { name, size } of entries) {
    tarHeader({ name, size, mode: 0o644 }).copy(archive, at);
    const data = archive.subarray(at + 512, at + 512 + size);
    randomFillSync(data);
    files.push({ name, data });
    at += 512 + padded(size);
  }
  return { archive, files };
}

describe("range memory reused while an archive streams", () => {
  /** The 80 MiB tar, made and uploaded once: each test fetches it with its own range size. */
  let reused:
    | Promise<{ files: { name: string; data: Buffer }[]; bytes: number; etag: string }>
    | undefined;
  const uploadReused = () => {
    reused ??= (async () => {
      const { archive, files } = randomTar(
        Array.from({ length: 20 }, (_, i) => ({
          name: `part-${i}.bin`,
          size: 4 * 1024 * 1024 - 1000 + i * 97,
        })),
      );
      const put = await putMultipart(bucket, "a/reused.tar", archive, 5 * 1024 * 1024);
      return { files, bytes: archive.length, etag: put.etag };
    })();
    return reused;
  };

  // 1 MiB ranges: the pool's memory is reused ~40 times; 24 MiB ranges: each larger than what
  // may be in flight to the extraction thread (a plain .tar hung there before a review's fix).
  it.each(["1Mi", "24Mi"])(
    "an 80 MiB tar in %s ranges, hashed on a thread, is byte-exact",
    async (rangeSize) => {
      // Ranges live in shared memory read in place by the hasher and the extractor threads,
      // and are reused once both are past them (util/chunk-ledger.ts): a range reused too
      // early would change a file, or fail the multipart MD5. Its 5 MiB parts are hashed four
      // or more at once in the SIMD lanes, which hold ranges until 32 MiB are there
      // (stream-hash-worker.ts).
      const { files, bytes, etag } = await uploadReused();
      expect(bytes).toBeGreaterThan(80 * 1024 * 1024);
      expect(etag).toMatch(/-17$/);
      const { code, json, data, stderr } = await fetch(
        [{ uri: `s3://${bucket}/a/reused.tar`, name: "reused" }],
        { DSFETCH_RANGE_SIZE: rangeSize },
      );
      expect(code, stderr).toBe(0);
      expect(json.datasets[0].verification).toEqual({ "multipart-md5": 1 });
      for (const f of files) {
        expect((await readFile(join(data, "reused", f.name))).equals(f.data), f.name).toBe(true);
      }
    },
  );
});

describe("bad archives publish nothing", () => {
  /**
   * The liar, the truncated and the hostile archive (each exit 8), staged by one
   * `dsfetch fetch` (a CLI process costs ~0.3 CPU-s; each dataset's error is its own in
   * --json), run once for the three tests that read it.
   */
  let invalid: ReturnType<typeof fetch> | undefined;
  const stageInvalid = () => {
    invalid ??= (async () => {
      const whole = await readFile(join(archives, "ds.tar.gz"));
      const hostile = gzipSync(
        tar(tarFile("ok.txt", "fine"), tarFile("../../escaped.txt", "gotcha")),
      );
      await Promise.all([
        putObject(bucket, "bad/liar.tar.gz", await readFile(join(archives, "ds.tar.xz"))),
        putObject(bucket, "bad/cut.tar.gz", whole.subarray(0, Math.floor(whole.length / 2))),
        putObject(bucket, "bad/slip.tgz", hostile),
      ]);
      return fetch(
        ["liar.tar.gz", "cut.tar.gz", "slip.tgz"].map((key) => ({
          uri: `s3://${bucket}/bad/${key}`,
        })),
      );
    })();
    return invalid;
  };
  const errorOf = (json: { datasets: { name: string; error: unknown }[] }, name: string) =>
    json.datasets.find((dataset) => dataset.name === name)?.error as
      | { code: string; message: string }
      | undefined;

  it("contents that do not match the extension: exit 8 ARCHIVE_INVALID", async () => {
    const { code, json, data } = await stageInvalid();
    expect(code).toBe(8);
    expect(errorOf(json, "liar")?.code).toBe("ARCHIVE_INVALID");
    await nothingPublished(data);
  });

  it("a large object whose contents do not match the extension: exit 8, nothing published", async () => {
    // Larger than the download may run ahead of the extractor (16 MiB): the ranges still
    // in flight or queued when the magic bytes are refused are dropped, not waited for
    // (the channel is abandoned: see test/util/buffer-pool.test.ts for a full queue).
    await putObject(bucket, "bad/large-liar.tar.gz", randomBytes(30 * 1024 * 1024));
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/bad/large-liar.tar.gz` }], {
      DSFETCH_RANGE_SIZE: "1Mi",
    });
    expect(code).toBe(8);
    expect(json.datasets[0].error.code).toBe("ARCHIVE_INVALID");
    await nothingPublished(data);
  });

  it("a truncated archive: exit 8 ARCHIVE_INVALID", async () => {
    const { code, json, data } = await stageInvalid();
    expect(code).toBe(8);
    expect(errorOf(json, "cut")?.code).toBe("ARCHIVE_INVALID");
    await nothingPublished(data);
  });

  it("a decompressor that stops: exit 10 STALLED after DSFETCH_EXTRACT_STALL_TIMEOUT, nothing published, the next run not held back", async () => {
    // A stand-in xz that never reads nor writes: without the watchdog this fetch, and every
    // worker waiting on its lock, would wait forever.
    const bin = await mkdtemp(join(root, "stalled-bin-"));
    const pidFile = join(bin, "xz.pid");
    await writeFile(join(bin, "xz"), standInXzScript(`echo $$ > '${pidFile}'\nexec sleep 600`), {
      mode: 0o755,
    });
    const storage = await mkdtemp(join(root, "storage-"));
    const args = ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"];
    const datasets = JSON.stringify([{ uri: `s3://${bucket}/a/xzed.tar.xz` }]);
    const stalled = await runCli(args, {
      env: {
        ...testEnv(),
        PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        DSFETCH_EXTRACT_STALL_TIMEOUT: "1",
      },
      stdin: datasets,
      timeoutMs: 60_000,
    });
    expect(stalled.code, stalled.stderr).toBe(10);
    expect(JSON.parse(stalled.stdout).datasets[0].error).toMatchObject({
      code: "STALLED",
      message: expect.stringContaining("xzed: the extraction made no progress for 1 s"),
      hint: expect.stringContaining("DSFETCH_EXTRACT_STALL_TIMEOUT"),
    });
    const data = join(storage, "ml", "data");
    await nothingPublished(data);
    // The stand-in was killed, not left behind (gone, or dead and not yet reaped).
    const pid = Number(await readFile(pidFile, "utf8"));
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
    if (stat !== undefined) expect(stat.slice(stat.lastIndexOf(")") + 2)[0]).toBe("Z");
    // The lock was released: the next run (the real xz) stages the dataset at once.
    const next = await runCli(args, { env: testEnv(), stdin: datasets, timeoutMs: 60_000 });
    expect(next.code, next.stderr).toBe(0);
    expect(await tree(join(data, "xzed"))).toEqual(await tree(source));
  });

  it("path traversal inside a tar.gz: exit 8 UNSAFE_PATH, nothing written outside", async () => {
    const { code, json, data } = await stageInvalid();
    expect(code).toBe(8);
    expect(errorOf(json, "slip")?.code).toBe("UNSAFE_PATH");
    expect(errorOf(json, "slip")?.message).toContain("../../escaped.txt");
    await nothingPublished(data);
    expect(
      (await readdir(join(data, "..", ".."), { recursive: true })).filter((p) =>
        p.includes("escaped"),
      ),
    ).toEqual([]);
  });

  it("expansion larger than the ephemeral volume: exit 7 NO_SPACE while writing, nothing left", async () => {
    // 8 MiB of zeros compress to a few KiB: the download fits, the expansion does not.
    const bomb = gzipSync(tar(tarFile("zeros.bin", Buffer.alloc(8 * 1024 * 1024))));
    expect(bomb.length).toBeLessThan(64 * 1024);
    await putObject(bucket, "bad/bomb.tar.gz", bomb);
    const { code, json, ephemeral } = await fetch([
      { uri: `s3://${bucket}/bad/bomb.tar.gz`, volumeOptions: { kind: "dynamic", size: "1Mi" } },
    ]);
    expect(code).toBe(7);
    expect(json.datasets[0].error.code).toBe("NO_SPACE");
    const left = await readdir(ephemeral, { recursive: true }).catch(() => [] as string[]);
    expect(left.filter((entry) => !entry.startsWith(".dsfetch"))).toEqual([]);
    expect(await readdir(join(ephemeral, ".dsfetch", "tmp")).catch(() => [])).toEqual([]);
  });
});
