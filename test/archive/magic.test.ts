// Magic bytes: every format made by the real tools, mismatches, and .tar.gz2 decided by content.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ArchiveFormat } from "../../src/archive/formats.ts";
import {
  checkMagic,
  type DetectedFormat,
  detectFormat,
  MAGIC_BYTES,
  tarChecksumMatches,
} from "../../src/archive/magic.ts";
import { DsfetchError } from "../../src/errors.ts";
import { file, hasProgram, tar, tarHeader } from "./tar-helpers.ts";

let scratch: string;
const samples = new Map<DetectedFormat, Buffer>();

function first(data: Buffer): Buffer {
  return data.subarray(0, MAGIC_BYTES);
}

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "dsfetch-magic-"));
  writeFileSync(join(scratch, "a.txt"), "hello\n".repeat(100));
  const make = (args: string[]) =>
    execFileSync("tar", [...args, "-C", scratch, "-cf", "-", "a.txt"], { maxBuffer: 1 << 26 });
  samples.set("tar", make([]));
  samples.set("gzip", make(["-z"]));
  if (hasProgram("bzip2")) samples.set("bzip2", make(["-j"]));
  if (hasProgram("xz")) samples.set("xz", make(["-J"]));
  // A minimal zip: one stored entry, written by hand (no zip tool needed).
  samples.set("zip", Buffer.concat([Buffer.from([0x50, 0x4b, 3, 4, 20, 0]), Buffer.alloc(40)]));
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe("detectFormat", () => {
  it("recognises every format from the tools' output", () => {
    for (const [format, data] of samples) expect(detectFormat(first(data)), format).toBe(format);
  });

  it("tar: GNU, v7 (checksum only), an empty archive; not a corrupt header", () => {
    expect(detectFormat(tar(file("x", "1")))).toBe("tar");
    const v7 = tarHeader({ name: "old.txt", format: "v7" });
    expect(v7.includes(Buffer.from("ustar"))).toBe(false);
    expect(detectFormat(v7)).toBe("tar");
    expect(
      detectFormat(tarHeader({ name: "old.txt", format: "v7", badChecksum: true })),
    ).toBeUndefined();
    expect(detectFormat(Buffer.alloc(1024))).toBe("tar");
    expect(detectFormat(tarHeader({ name: "x", format: "gnu" }))).toBe("tar");
  });

  it("tar checksums: unsigned (POSIX) and signed (old Sun tar) sums both accepted", () => {
    const header = tarHeader({ name: "caf\u00e9-\u00fc", format: "v7" });
    expect(tarChecksumMatches(header)).toBe(true);
    let signed = 0;
    for (let i = 0; i < 512; i++) {
      const c = i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
      signed += c > 127 ? c - 256 : c;
    }
    header.write(`${signed.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    expect(tarChecksumMatches(header)).toBe(true);
    expect(detectFormat(header)).toBe("tar");
    header.write(`${(signed + 1).toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    expect(tarChecksumMatches(header)).toBe(false);
  });

  it("empty zip and anything else", () => {
    expect(detectFormat(Buffer.from([0x50, 0x4b, 5, 6, ...Buffer.alloc(18)]))).toBe("zip");
    expect(detectFormat(Buffer.from("just some text, nothing else"))).toBeUndefined();
    expect(detectFormat(Buffer.alloc(0))).toBeUndefined();
    expect(detectFormat(Buffer.from([0x1f, 0x8b]))).toBeUndefined();
    expect(detectFormat(Buffer.from("BZh0"))).toBeUndefined();
    expect(detectFormat(Buffer.alloc(100))).toBeUndefined(); // shorter than a tar block
  });
});

describe("checkMagic", () => {
  const cases: [ArchiveFormat, DetectedFormat, object][] = [
    ["tar", "tar", { compression: "none", container: "tar" }],
    ["tar.gz", "gzip", { compression: "gzip", container: "tar" }],
    ["tar.bz2", "bzip2", { compression: "bzip2", container: "tar" }],
    ["tar.xz", "xz", { compression: "xz", container: "tar" }],
    ["zip", "zip", { compression: "none", container: "zip" }],
    ["tar.gz2", "gzip", { compression: "gzip", container: "tar" }],
    ["tar.gz2", "bzip2", { compression: "bzip2", container: "tar" }],
  ];
  for (const [expected, content, chain] of cases) {
    it(`.${expected} with ${content} content`, () => {
      const data = samples.get(content);
      if (data === undefined) return; // tool missing
      expect(checkMagic(expected, first(data), "ds", "k")).toEqual(chain);
    });
  }

  it("mismatches fail with ARCHIVE_INVALID, naming dataset, key, expected and found", () => {
    const gz = samples.get("gzip") ?? Buffer.alloc(0);
    let error: unknown;
    try {
      checkMagic("tar", first(gz), "mnist", "data/mnist.tar");
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(DsfetchError);
    const e = error as DsfetchError;
    expect(e.code).toBe("ARCHIVE_INVALID");
    expect(e.message).toBe(
      "mnist: data/mnist.tar has the extension .tar but its contents are gzip data: a file whose contents don't match its extension",
    );
    expect(e.hint).toMatch(/rename the object to end in \.tar\.gz/);
    expect(e.dataset).toBe("mnist");

    const all: [ArchiveFormat, DetectedFormat][] = [
      ["tar.gz", "tar"],
      ["tar.bz2", "gzip"],
      ["tar.xz", "bzip2"],
      ["zip", "tar"],
      ["tar", "zip"],
      ["tar.gz2", "xz"],
      ["tar.gz2", "tar"],
    ];
    for (const [expected, content] of all) {
      const data = samples.get(content);
      if (data === undefined) continue;
      expect(
        () => checkMagic(expected, first(data), "ds", "k"),
        `${expected} vs ${content}`,
      ).toThrow(/a file whose contents don't match its extension/);
    }
  });

  it("unknown and empty contents", () => {
    expect(() => checkMagic("zip", Buffer.from("<html>not found</html>"), "ds", "x.zip")).toThrow(
      /ds: x\.zip has the extension \.zip but its first bytes match no known archive format/,
    );
    expect(() => checkMagic("tar.gz", Buffer.alloc(0), "ds", "x.tgz")).toThrow(
      /ds: x\.tgz has the extension \.tgz but the object is empty/,
    );
    // The extension as the key has it, not the format's name (".tbz" was said as ".tar.bz2").
    expect(() => checkMagic("tar.bz2", Buffer.alloc(0), "ds", "d/X.TBZ")).toThrow(
      /ds: d\/X\.TBZ has the extension \.TBZ but/,
    );
    try {
      checkMagic("tar.gz2", Buffer.from("plain text"), "ds", "x.tar.gz2");
    } catch (error) {
      expect((error as DsfetchError).expected).toBe("gzip data or bzip2 data");
    }
  });
});
