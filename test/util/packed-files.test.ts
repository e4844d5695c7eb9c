import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PackedFiles, packFiles } from "../../src/util/packed-files.ts";
import {
  fileBytes,
  MANIFEST_VERSION,
  type Manifest,
  readManifest,
  type WrittenFiles,
  writeManifest,
} from "../../src/volumes/manifest.ts";

const FILES = [
  { path: "a.txt", bytes: 5 },
  { path: "dir/caf\u00e9 \u65e5\u672c.bin", bytes: 2 ** 40 },
  { path: "dir/empty", bytes: 0 },
];

function manifest(files: WrittenFiles): Manifest<WrittenFiles> {
  return {
    version: MANIFEST_VERSION,
    name: "images",
    uri: "s3://bucket/images.tar.gz",
    endpoint: undefined,
    kind: "object",
    etag: "0123456789abcdef0123456789abcdef",
    versionId: undefined,
    listingDigest: undefined,
    bytes: 123,
    files,
    verification: "md5",
    createdAt: "2026-12-05T18:00:00.000Z",
    host: "node-1",
  };
}

/** A manifest as readManifest gives it: the fields, and the files' count and total size. */
function tallied(files: readonly { bytes: number }[]) {
  return {
    ...manifest([]),
    files: { count: files.length, bytes: files.reduce((sum, file) => sum + file.bytes, 0) },
  };
}

async function readBack(path: string) {
  const read = await readManifest(path);
  if (read === undefined) return undefined;
  return { ...read, files: { count: read.files.length, bytes: fileBytes(read.files) } };
}

let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("packed files (an archive's file list as one string and one array of sizes)", () => {
  it("gives back every path and size, in order, through a structured clone", () => {
    const packed = new PackedFiles(structuredClone(packFiles(FILES)));
    expect(packed.length).toBe(3);
    expect([...packed]).toEqual(FILES);
    expect(packed.totalBytes()).toBe(5 + 2 ** 40);
    expect(fileBytes(packed)).toBe(5 + 2 ** 40);
    expect([...new PackedFiles(packFiles([]))]).toEqual([]);
  });

  it("refuses a path with a line feed rather than misread the list", () => {
    expect(() => packFiles([{ path: "a\nb", bytes: 1 }])).toThrow(/line feed/);
  });
});

describe("writeManifest", () => {
  it("writes a manifest that reads back the same, from packed files and from a list", async () => {
    dir = mkdtempSync(join(tmpdir(), "dsfetch-manifest-"));
    const packedPath = join(dir, "packed.json");
    await writeManifest(packedPath, manifest(new PackedFiles(packFiles(FILES))));
    const listPath = join(dir, "list.json");
    await writeManifest(listPath, manifest(FILES), { durable: true });
    for (const path of [packedPath, listPath]) {
      expect(JSON.parse(readFileSync(path, "utf8"))).toEqual(manifest(FILES));
      expect(await readBack(path)).toEqual(tallied(FILES));
    }
    expect(readFileSync(packedPath, "utf8")).toBe(readFileSync(listPath, "utf8"));
    const empty = join(dir, "empty.json");
    await writeManifest(empty, manifest([]));
    expect(JSON.parse(readFileSync(empty, "utf8"))).toEqual(manifest([]));
    expect(await readBack(empty)).toEqual(tallied([]));
  });

  it("writes 300,000 files in pieces, every one of them", async () => {
    dir = mkdtempSync(join(tmpdir(), "dsfetch-manifest-"));
    const many = Array.from({ length: 300_000 }, (_, i) => ({
      path: `train/class${i % 1000}/n${i}.JPEG`,
      bytes: i,
    }));
    const path = join(dir, "many.json");
    await writeManifest(path, manifest(new PackedFiles(packFiles(many))));
    expect(JSON.parse(readFileSync(path, "utf8")).files).toEqual(many);
    expect(await readBack(path)).toEqual(tallied(many));
  });

  it("leaves nothing behind when the write fails part way", async () => {
    dir = mkdtempSync(join(tmpdir(), "dsfetch-manifest-"));
    const path = join(dir, "m.json");
    class Failing extends PackedFiles {
      override *[Symbol.iterator]() {
        yield { path: "a", bytes: 1 };
        throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
      }
    }
    await expect(
      writeManifest(path, manifest(new Failing(packFiles(FILES)))),
    ).rejects.toMatchObject({
      code: "ENOSPC",
    });
    expect(existsSync(path)).toBe(false);
  });
});
