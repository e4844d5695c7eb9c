// Zip extraction round trips: archives made by the system `zip` (Info-ZIP) from a real tree,
// compared byte for byte, and Zip64 archives built in code (by entry count, by declared size).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { extractZip } from "../../src/archive/zip-extract.ts";
import {
  DATASET,
  expectRefused,
  expectSameTree,
  extractBuffer,
  limits,
  newCase,
  removeCases,
  snapshot,
} from "./zip-harness.ts";
import { buildZip, centralRecord, endRecords, localRecord, resolveEntry } from "./zip-writer.ts";

const ZIP = "/usr/bin/zip";
const hasZip = existsSync(ZIP);

let root: string;
let tree: string;
let treeFiles = 0;
let treeBytes = 0;

function sh(command: string, cwd: string): void {
  execFileSync("sh", ["-c", command], { cwd, stdio: ["ignore", "ignore", "inherit"] });
}

function put(path: string, data: Buffer | string, mode = 0o644): void {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, data);
  chmodSync(path, mode);
  treeFiles++;
  treeBytes += Buffer.byteLength(data);
}

beforeAll(async () => {
  root = (await newCase("tree")).tmp;
  tree = join(root, "src");
  const text = Array.from({ length: 40_000 }, (_, i) => `line ${i}: the quick brown fox\n`).join(
    "",
  );
  put(join(tree, "README.md"), "# dataset\n");
  put(join(tree, "empty.txt"), "");
  put(join(tree, "bin", "run.sh"), "#!/bin/sh\necho hi\n", 0o755);
  put(join(tree, "bin", "tool"), randomBytes(5000), 0o700);
  put(join(tree, "data", "random.bin"), randomBytes(300_000)); // stored by zip (incompressible)
  put(join(tree, "data", "zeros.bin"), Buffer.alloc(2 * 1024 * 1024)); // large, deflated
  put(join(tree, "data", "big-random.bin"), randomBytes(3 * 1024 * 1024)); // large, stored
  put(join(tree, "data", "text.txt"), text); // large, deflated
  put(join(tree, "ünïcödé", "日本語.txt"), "こんにちは\n");
  put(join(tree, "ünïcödé", "café.csv"), "a,b\n1,2\n");
  put(join(tree, "nested", "a", "b", "c", "d", "deep.txt"), "deep\n");
  mkdirSync(join(tree, "empty-dir"));
  mkdirSync(join(tree, "nested", "empty"), { recursive: true });
});

afterAll(removeCases);

async function roundTrip(label: string, makeZip: (zipPath: string) => void): Promise<void> {
  const zipCase = await newCase(label);
  makeZip(zipCase.zipPath);
  const result = await extractZip(zipCase.zipPath, zipCase.dest, limits(), DATASET);
  await expectSameTree(tree, zipCase.dest);
  expect(result.files).toHaveLength(treeFiles);
  expect(result.bytes).toBe(treeBytes);
  expect(result.files.reduce((sum, file) => sum + file.bytes, 0)).toBe(treeBytes);
  const zeros = result.files.find((file) => file.path === "data/zeros.bin");
  expect(zeros?.bytes).toBe(2 * 1024 * 1024);
  // Files read-only as published: 0444, or 0555 for anything with an x bit (0700 becomes 0555).
  expect((await stat(join(zipCase.dest, "README.md"))).mode & 0o777).toBe(0o444);
  expect((await stat(join(zipCase.dest, "bin", "tool"))).mode & 0o777).toBe(0o555);
  expect((await stat(join(zipCase.dest, "empty-dir"))).mode & 0o777).toBe(0o755);
}

describe.runIf(hasZip)("archives made by Info-ZIP zip", () => {
  it("deflated (zip stores what does not compress), with directories, empty files, unicode names, x bits", async () => {
    await roundTrip("deflate", (zipPath) => sh(`${ZIP} -qr ${zipPath} .`, tree));
  });

  it("stored (zip -0)", async () => {
    await roundTrip("stored", (zipPath) => sh(`${ZIP} -qr -0 ${zipPath} .`, tree));
  });

  it("with data descriptors (zip -fd)", async () => {
    await roundTrip("fd", (zipPath) => sh(`${ZIP} -qr -fd ${zipPath} .`, tree));
  });

  it("written to a pipe (zip - | cat: data descriptors and Zip64 local fields throughout)", async () => {
    await roundTrip("pipe", (zipPath) => sh(`${ZIP} -qr - . | cat > ${zipPath}`, tree));
  });

  it("streaming standard input (zip - - < file | cat)", async () => {
    const zipCase = await newCase("stdin");
    const input = randomBytes(200_000);
    await writeFile(join(zipCase.tmp, "input.bin"), input);
    sh(`${ZIP} -q - - < input.bin | cat > ${zipCase.zipPath}`, zipCase.tmp);
    const result = await extractZip(zipCase.zipPath, zipCase.dest, limits(), DATASET);
    expect(result.files).toEqual([{ path: "-", bytes: input.length }]);
    expect((await readFile(join(zipCase.dest, "-"))).equals(input)).toBe(true);
  });

  it("forced Zip64 (zip -fz)", async () => {
    await roundTrip("fz", (zipPath) => sh(`${ZIP} -qr -fz ${zipPath} .`, tree));
  });

  it("5,000 files", async () => {
    const zipCase = await newCase("5k");
    const src = join(zipCase.tmp, "many");
    let bytes = 0;
    for (let d = 0; d < 50; d++) {
      mkdirSync(join(src, `dir-${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) {
        const body = `file ${d}/${f}\n`.repeat(1 + ((d * 100 + f) % 37));
        writeFileSync(join(src, `dir-${d}`, `f-${f}.txt`), body);
        bytes += body.length;
      }
    }
    sh(`${ZIP} -qr ${zipCase.zipPath} .`, src);
    const result = await extractZip(zipCase.zipPath, zipCase.dest, limits(), DATASET);
    expect(result.files).toHaveLength(5000);
    expect(result.entries).toBe(5050);
    expect(result.bytes).toBe(bytes);
    await expectSameTree(src, zipCase.dest);
  });
});

describe("Zip64 built in code", () => {
  it("a small stored entry with Zip64 extra fields and Zip64 end records", async () => {
    const zip = buildZip(
      [{ name: "small.txt", data: "tiny but zip64\n", method: 0, zip64: true }],
      { zip64: true },
    );
    const { result, zipCase } = await extractBuffer(zip, "z64-small");
    expect(result).toEqual({ files: [{ path: "small.txt", bytes: 15 }], bytes: 15, entries: 1 });
    expect(await readFile(join(zipCase.dest, "small.txt"), "utf8")).toBe("tiny but zip64\n");
  });

  it("deflated Zip64 entries with 8-byte data descriptors", async () => {
    const data = Buffer.from("zip64 descriptor ".repeat(1000));
    const zip = buildZip(
      [
        { name: "a/one.txt", data, zip64: true, dataDescriptor: true },
        { name: "a/two.txt", data: "two", zip64: true },
      ],
      { zip64: true },
    );
    const { zipCase } = await extractBuffer(zip, "z64-dd");
    expect((await readFile(join(zipCase.dest, "a", "one.txt"))).equals(data)).toBe(true);
    expect(await readFile(join(zipCase.dest, "a", "two.txt"), "utf8")).toBe("two");
  });

  it("more than 65,535 entries (Zip64 by count)", async () => {
    const count = 65_540;
    const specs = Array.from({ length: count }, (_, i) => ({
      name: `d${i % 64}/f${i}`,
      data: String(i),
      method: 0,
    }));
    const zip = buildZip(specs);
    // The classic record says 0xFFFF: only the Zip64 record has the real count.
    expect(zip.readUInt16LE(zip.length - 12)).toBe(0xffff);
    const { result, zipCase } = await extractBuffer(zip, "z64-count");
    expect(result.entries).toBe(count);
    expect(result.files).toHaveLength(count);
    expect(await readFile(join(zipCase.dest, "d3", "f65539"), "utf8")).toBe("65539");
    expect(await readdir(zipCase.dest)).toHaveLength(64);
    expect(await readdir(join(zipCase.dest, "d0"))).toHaveLength(1025);
  }, 120_000);

  it("an entry declared over 4 GiB (sparse file) is refused by maxBytes before any write", async () => {
    const zipCase = await newCase("z64-huge");
    const size = 5 * 2 ** 30;
    const entry = resolveEntry({
      name: "huge.bin",
      method: 0,
      compressed: Buffer.alloc(0),
      size,
      compressedSize: size,
      crc: 0,
      zip64: true,
    });
    const local = localRecord(entry);
    const cdOffset = local.length + size;
    const central = centralRecord(entry, 0);
    const end = endRecords(1, cdOffset, central.length, { zip64: true });
    const fd = openSync(zipCase.zipPath, "w");
    try {
      writeSync(fd, local, 0, local.length, 0);
      const tail = Buffer.concat([central, end]);
      writeSync(fd, tail, 0, tail.length, cdOffset);
    } finally {
      closeSync(fd);
    }
    expect((await stat(zipCase.zipPath)).size).toBe(cdOffset + central.length + end.length);
    let caught: unknown;
    try {
      await extractZip(zipCase.zipPath, zipCase.dest, limits({ maxBytes: 2 ** 30 }), DATASET);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: "NO_SPACE", dataset: DATASET });
    expect((caught as Error).message).toContain('zip entry "huge.bin"');
    expect((caught as Error).message).toContain(`declares ${size} bytes`);
    expect(await snapshot(zipCase.dest)).toEqual([]);
  });
});

describe("names and layout", () => {
  it("creates implied directories and keeps empty directories", async () => {
    const zip = buildZip([
      { name: "x/y/z/file.txt", data: "implied parents" },
      { name: "empty/", unixMode: 0o040700 },
      { name: "./dot/file", data: "dot prefix" },
    ]);
    const { result, zipCase } = await extractBuffer(zip, "implied");
    expect(await snapshot(zipCase.dest)).toEqual([
      "d dot",
      "f dot/file 10",
      "d empty",
      "d x",
      "d x/y",
      "d x/y/z",
      "f x/y/z/file.txt 15",
    ]);
    expect(result.files.map((file) => file.path)).toEqual(["x/y/z/file.txt", "dot/file"]);
  });

  it("decodes names: UTF-8 flag, Info-ZIP Unicode Path field, unflagged UTF-8, CP437", async () => {
    const unicodeName = "ünïcode.txt";
    const legacy = Buffer.from("legacy.txt");
    const { crc32 } = await import("node:zlib");
    const unicodeField = Buffer.concat([
      Buffer.from([0x75, 0x70]),
      Buffer.from([0, 0]),
      Buffer.from([1]),
      Buffer.alloc(4),
      Buffer.from(unicodeName),
    ]);
    unicodeField.writeUInt16LE(unicodeField.length - 4, 2);
    unicodeField.writeUInt32LE(crc32(legacy), 5);
    const zip = buildZip([
      { name: "flagged-é.txt", data: "1" },
      { name: legacy, data: "2", centralExtra: unicodeField },
      { name: Buffer.from("raw-é.txt"), data: "3" },
      { name: Buffer.from([0x63, 0x70, 0x82, 0x2e, 0x74]), data: "4" },
    ]);
    const { zipCase } = await extractBuffer(zip, "names");
    expect((await readdir(zipCase.dest)).sort()).toEqual(
      ["cpé.t", "flagged-é.txt", "raw-é.txt", unicodeName].sort(),
    );
  });

  it("an archive with no entries extracts nothing", async () => {
    const { result, zipCase } = await extractBuffer(buildZip([]), "empty");
    expect(result).toEqual({ files: [], bytes: 0, entries: 0 });
    expect(await snapshot(zipCase.dest)).toEqual([]);
  });

  it("an archive comment is fine", async () => {
    const { result } = await extractBuffer(
      buildZip([{ name: "c.txt", data: "c" }], { comment: "made by a test" }),
      "comment",
    );
    expect(result.files).toEqual([{ path: "c.txt", bytes: 1 }]);
  });

  it("a file that is not a zip at all fails clearly", async () => {
    const gzip = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), randomBytes(200)]);
    await expectRefused(gzip, "notzip", {
      code: "ARCHIVE_INVALID",
      includes: ["not a zip archive"],
    });
  });

  it("refuses a destination that is not empty (a caller bug)", async () => {
    const zipCase = await newCase("nonempty");
    await writeFile(zipCase.zipPath, buildZip([{ name: "a", data: "a" }]));
    await mkdir(join(zipCase.dest, "already"));
    await expect(
      extractZip(zipCase.zipPath, zipCase.dest, limits(), DATASET),
    ).rejects.toMatchObject({
      code: "INTERNAL",
    });
  });
});
