// Two zips real tools make that dsfetch read wrongly (fidelity tester, 2026-12-07):
// - Info-ZIP's zip on Linux stores a name that is not UTF-8 (Latin-1 `caf\xe9.txt`) as bytes,
//   without the UTF-8 flag: it was decoded as CP437 and published as `cafΘ.txt`, exit 0. An
//   entry made on Unix or OS X with such a name is refused now, as a tar's is; one made on
//   MS-DOS or Windows is still CP437, the standard's encoding (zip-extract.test.ts).
// - bsdtar writing a zip to a pipe pads it with zeros to a 10240-byte block: refused as
//   "truncated or has bytes appended", while unzip and Python read it. Zeros after the end
//   record are padding now (up to 64 KiB), as after gzip, bzip2 and xz data.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { expectRefused, extractBuffer, removeCases } from "./zip-harness.ts";
import { buildZip } from "./zip-writer.ts";

afterAll(removeCases);

describe("zip names that are not UTF-8", () => {
  it("made on Unix (Info-ZIP, Latin-1 bytes, no flag): refused, naming the bytes, nothing extracted", async () => {
    const zip = buildZip([
      { name: "ok.txt", data: "fine\n" },
      { name: Buffer.from("caf\xe9.txt", "latin1"), data: "l\n", versionMadeBy: 0x031e },
    ]);
    const { error, zipCase } = await expectRefused(zip, "latin1-unix", {
      code: "ARCHIVE_INVALID",
      includes: ["has a name that is not valid UTF-8 (bytes 636166e92e747874), made on Unix"],
    });
    expect(error.hint).toMatch(/UTF-8 file names/);
    expect(await readdir(zipCase.dest).catch(() => [])).toEqual([]);
  });

  it("made on OS X: refused too", async () => {
    const zip = buildZip([
      { name: Buffer.from("caf\xe9.txt", "latin1"), data: "l\n", versionMadeBy: 0x1314 },
    ]);
    await expectRefused(zip, "latin1-osx", {
      code: "ARCHIVE_INVALID",
      includes: ["made on OS X"],
    });
  });
});

describe("zip names read as CP437 (made on MS-DOS or Windows, not UTF-8)", () => {
  it("extracted under their CP437 reading, and said: another code page's names come out as other characters", async () => {
    // "テスト.txt" as Japanese Windows writes it (CP932), no UTF-8 flag, made on FAT.
    const cp932 = Buffer.from([0x83, 0x65, 0x83, 0x58, 0x83, 0x67, 0x2e, 0x74, 0x78, 0x74]);
    const zip = buildZip([
      { name: "plain.txt", data: "1" },
      { name: cp932, data: "2", versionMadeBy: 0x0014 },
    ]);
    const { result, zipCase } = await extractBuffer(zip, "cp932");
    expect((await readdir(zipCase.dest)).sort()).toEqual(["plain.txt", "âeâXâg.txt"]);
    expect(result.warnings).toEqual([
      expect.stringMatching(
        /^1 name in the zip archive \("âeâXâg\.txt"\) was not marked UTF-8 and was read as CP437, .* \(CP932 in Japan, CP866 for Cyrillic\)/,
      ),
    ]);
  });

  it("a CP932 name whose second byte is 0x5C (CP437's backslash) is refused saying the encoding, not a path trick", async () => {
    // 表.txt in CP932: 95 5C, then ".txt".
    const zip = buildZip([
      {
        name: Buffer.from([0x95, 0x5c, 0x2e, 0x74, 0x78, 0x74]),
        data: "x",
        versionMadeBy: 0x0014,
      },
    ]);
    const { error } = await expectRefused(zip, "cp932-5c", {
      code: "UNSAFE_PATH",
      includes: ["contains a backslash", "was read as CP437", "CP932 in Japan"],
    });
    expect(error.hint).toMatch(/UTF-8 names/);
  });

  it("ASCII and UTF-8 names: nothing said", async () => {
    const { result } = await extractBuffer(
      buildZip([
        { name: "a.txt", data: "1" },
        { name: Buffer.from("é.txt"), data: "2" },
      ]),
      "no-cp437",
    );
    expect(result.warnings).toEqual([]);
  });
});

describe("a zip followed by zeros", () => {
  const entries = [
    { name: "a.txt", data: "alpha\n" },
    { name: "d/b.txt", data: "beta\n" },
  ];

  it("padded to a 10240-byte block (bsdtar to a pipe): extracted exactly", async () => {
    const plain = buildZip(entries);
    const padded = Buffer.concat([plain, Buffer.alloc(10240 - (plain.length % 10240))]);
    const { zipCase } = await extractBuffer(padded, "padded");
    expect(await readFile(join(zipCase.dest, "a.txt"), "utf8")).toBe("alpha\n");
    expect(await readFile(join(zipCase.dest, "d", "b.txt"), "utf8")).toBe("beta\n");
  });

  it("other bytes after the end record: still refused", async () => {
    const zip = Buffer.concat([buildZip(entries), Buffer.alloc(100), Buffer.from("x")]);
    await expectRefused(zip, "appended", {
      code: "ARCHIVE_INVALID",
      includes: ["truncated or has bytes appended"],
    });
  });

  it("more than 64 KiB of zeros: refused, saying so", async () => {
    const zip = Buffer.concat([buildZip(entries), Buffer.alloc(65 * 1024)]);
    await expectRefused(zip, "long-padding", {
      code: "ARCHIVE_INVALID",
      includes: ["ends with more than 64 KiB of zero bytes", "truncated or has bytes appended"],
    });
  });
});
