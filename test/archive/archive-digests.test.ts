// An expanded archive's manifest lists every file with its digest (SPEC §2: "file list with
// sizes and digests"), as objects' have: "crc32:" + base64 of the big-endian CRC-32, checked
// here against the CRC-32 of the bytes on disk, for archives made by the system's tar, gzip
// and zip and one made here, with the files written one at a time and in parallel.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { link, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { createBucket, putMultipartWithChecksum, putObject, testEnv } from "../harness/s3.ts";
import { hardlink, symlink, tar, file as tarFile } from "./tar-helpers.ts";

const MiB = 1024 * 1024;

let root: string;
let source: string;
let bucket: string;

interface ManifestEntry {
  path: string;
  bytes: number;
  digest?: string;
}

/** The digest dsfetch's manifests give these bytes (fetch/verification.ts fileDigest's form). */
function expectedDigest(bytes: Uint8Array): string {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32(bytes));
  return `crc32:${value.toString("base64")}`;
}

/** The regular files under `dir`, relative, "/"-separated. */
async function regularFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name).slice(dir.length + 1));
  }
  return out.sort();
}

async function readManifestFiles(data: string, name: string): Promise<ManifestEntry[]> {
  const text = await readFile(join(data, ".dsfetch", "manifests", `${name}.json`), "utf8");
  return (JSON.parse(text) as { files: ManifestEntry[] }).files;
}

/**
 * Every file of the dataset is listed once with the digest of its bytes on disk, and nothing
 * else is listed. Returns the entries by path.
 */
async function expectDigestsMatchDisk(
  data: string,
  name: string,
): Promise<Map<string, ManifestEntry>> {
  const dir = join(data, name);
  const files = await readManifestFiles(data, name);
  expect(files.map((f) => f.path).sort()).toEqual(await regularFiles(dir));
  for (const entry of files) {
    const bytes = await readFile(join(dir, entry.path));
    expect({ path: entry.path, bytes: entry.bytes, digest: entry.digest }).toEqual({
      path: entry.path,
      bytes: bytes.length,
      digest: expectedDigest(bytes),
    });
  }
  return new Map(files.map((f) => [f.path, f]));
}

/** The source tree's files, by path: what each archive must reproduce. */
const SOURCE_FILES: Record<string, Buffer> = {
  "empty.txt": Buffer.alloc(0),
  "hello.txt": Buffer.from("hello"),
  "labels.csv": Buffer.from("id,label\n1,cat\n2,dog\n".repeat(500)),
  // Over 1 MiB: written one chunk at a time even in parallel mode (tar-extract.ts), and
  // spanning many input chunks, whose CRCs are chained.
  "big/shard-0.bin": randomBytes(3 * MiB + 123),
};
for (let i = 0; i < 30; i++) SOURCE_FILES[`images/img-${i}.bin`] = randomBytes(500 + i * 211);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-digests-"));
  source = join(root, "source");
  const archives = join(root, "archives");
  await mkdir(archives);
  for (const [path, bytes] of Object.entries(SOURCE_FILES)) {
    await mkdir(join(source, path, ".."), { recursive: true });
    await writeFile(join(source, path), bytes);
  }
  // GNU tar stores the second name of an inode as a hard link entry ('1'); zip copies it.
  await link(join(source, "labels.csv"), join(source, "labels-link.csv"));
  const run = (command: string, args: string[]) =>
    execFileSync(command, args, { cwd: source, stdio: "ignore" });
  run("tar", ["-cf", join(archives, "ds.tar"), "."]);
  run("tar", ["-cf", join(archives, "ds-for-gzip.tar"), "."]);
  run("gzip", ["-6", join(archives, "ds-for-gzip.tar")]);
  run("zip", ["-qr", join(archives, "ds.zip"), "."]);
  bucket = await createBucket("digests");
  await putObject(bucket, "plain.tar", await readFile(join(archives, "ds.tar")));
  await putObject(bucket, "gzipped.tar.gz", await readFile(join(archives, "ds-for-gzip.tar.gz")));
  await putObject(bucket, "zipped.zip", await readFile(join(archives, "ds.zip")));
  // Made here: a hard link to a hard link, a link to an empty file, a symbolic link (never
  // listed: not a regular file).
  await putObject(
    bucket,
    "handmade.tar",
    tar(
      tarFile("data/a.bin", SOURCE_FILES["big/shard-0.bin"]),
      tarFile("data/empty", ""),
      hardlink("data/a-link.bin", "data/a.bin"),
      hardlink("data/a-link-2.bin", "data/a-link.bin"),
      hardlink("data/empty-link", "data/empty"),
      symlink("data/hello-sym", "a.bin"),
    ),
  );
  // The same bytes as labels.csv, as an object with a full-object CRC32 checksum: its
  // manifest digest must be the archive entry's, character for character.
  await putMultipartWithChecksum(
    bucket,
    "labels.csv",
    SOURCE_FILES["labels.csv"] as Buffer,
    5 * MiB,
    "CRC32",
    "FULL_OBJECT",
  );
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fetch(datasets: unknown, env: Record<string, string>) {
  const storage = await mkdtemp(join(root, "storage-"));
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
      join(storage, "ephemeral"),
      "--json",
    ],
    { env: { ...testEnv(), ...env }, stdin: JSON.stringify(datasets), timeoutMs: 120_000 },
  );
  return { ...result, data: join(storage, "ml", "data") };
}

const ARCHIVES = ["plain.tar", "gzipped.tar.gz", "zipped.zip", "handmade.tar"] as const;
const nameOf = (key: string) => key.replace(/\.(tar\.gz|tar|zip)$/, "");

for (const writes of ["serial", "parallel"] as const) {
  describe(`archive manifests carry each file's CRC-32 (DSFETCH_FILE_WRITES=${writes})`, () => {
    let staged: ReturnType<typeof fetch> | undefined;
    const stage = () => {
      staged ??= fetch(
        [
          ...ARCHIVES.map((key) => ({ uri: `s3://${bucket}/${key}` })),
          { uri: `s3://${bucket}/labels.csv`, name: "labels-object" },
        ],
        { DSFETCH_FILE_WRITES: writes },
      );
      return staged;
    };

    for (const key of ["plain.tar", "gzipped.tar.gz", "zipped.zip"] as const) {
      it(`${key} (made by the system's tools): every file's digest is its bytes' CRC-32`, async () => {
        const { code, stderr, data } = await stage();
        expect(code, stderr).toBe(0);
        if (writes === "parallel") {
          // The small files really went through the parallel writes (their CRC-32 is taken
          // from the buffered data, not as written).
          expect(stderr).toMatch(
            new RegExp(`${nameOf(key)}: [1-9]\\d* of \\d+ files written in parallel`),
          );
        }
        const entries = await expectDigestsMatchDisk(data, nameOf(key));
        expect(entries.size).toBe(Object.keys(SOURCE_FILES).length + 1);
        // Known values, so the form itself is pinned (not only self-consistent).
        expect(entries.get("empty.txt")?.digest).toBe("crc32:AAAAAA==");
        expect(entries.get("hello.txt")?.digest).toBe("crc32:NhCmhg==");
        // A hard link in the tar (a copy in the zip): the bytes of the file it links to.
        expect(entries.get("labels-link.csv")?.digest).toBe(entries.get("labels.csv")?.digest);
      });
    }

    it("handmade.tar: hard links (to a link, to an empty file) take their target's digest", async () => {
      const { code, stderr, data } = await stage();
      expect(code, stderr).toBe(0);
      const entries = await expectDigestsMatchDisk(data, "handmade");
      const big = expectedDigest(SOURCE_FILES["big/shard-0.bin"] as Buffer);
      expect(Object.fromEntries([...entries].map(([path, e]) => [path, e.digest]))).toEqual({
        "data/a.bin": big,
        "data/a-link.bin": big,
        "data/a-link-2.bin": big,
        "data/empty": "crc32:AAAAAA==",
        "data/empty-link": "crc32:AAAAAA==",
      });
      const dir = join(data, "handmade", "data");
      expect((await stat(join(dir, "a-link-2.bin"))).ino).toBe(
        (await stat(join(dir, "a.bin"))).ino,
      );
    });

    it("an archive's file and the same bytes as an object have the same digest", async () => {
      const { code, stderr, data } = await stage();
      expect(code, stderr).toBe(0);
      const [object] = await readManifestFiles(data, "labels-object");
      const inTar = (await readManifestFiles(data, "plain")).find((f) => f.path === "labels.csv");
      expect(object?.digest).toBe(expectedDigest(SOURCE_FILES["labels.csv"] as Buffer));
      expect(inTar?.digest).toBe(object?.digest);
    });
  });
}
