// writeNewFileSync / writeAllSync: whole data on disk, in pieces, never over an existing file.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { WRITE_PIECE, writeNewFileSync } from "../../src/util/write-piece.ts";

const dir = mkdtempSync(join(tmpdir(), "dsfetch-write-piece-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("writeNewFileSync", () => {
  it("writes data larger than one piece byte-exact, with the mode asked for", () => {
    const data = randomBytes(4 * WRITE_PIECE + 5);
    const path = join(dir, "big.bin");
    writeNewFileSync(path, data, 0o444);
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o444);
  });

  it("refuses to replace an existing file", () => {
    const path = join(dir, "exists.bin");
    writeFileSync(path, "keep");
    expect(() => writeNewFileSync(path, Buffer.from("new"), 0o444)).toThrow(/EEXIST/);
    expect(readFileSync(path, "utf8")).toBe("keep");
  });
});
