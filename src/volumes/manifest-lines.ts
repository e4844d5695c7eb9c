/**
 * Reads a manifest in the form writeManifest gives it (manifest.ts: the fields, then
 * `"files": [` with one file per line as JSON.stringify writes it, then `]` and `}`) a piece
 * at a time, keeping of the files only their count and total size: all that any reader of a
 * manifest uses (the files are for people and for tools reading the JSON).
 *
 * Why: the manifest of an archive of 1,000,000 files is 59-69 MB of JSON. Read whole and
 * parsed, a warm check of that dataset (every job start after the first) took ~2 s and
 * peaked at 326-460 MB RSS: the text, then an object per file (session 24's note).
 *
 * Each file line is checked against the exact form JSON.stringify gives a file
 * (`{"path":"…","bytes":N}` or with `,"digest":"…"`), strings and numbers as JSON
 * defines them. Anything else (a manifest of an older dsfetch, whose files were not last or
 * spread over lines; a damaged one) answers OTHER_FORM, and manifest.ts parses the whole text
 * as before, which decides whether it is a manifest at all: this reader never accepts a file
 * list the whole parse would refuse.
 */
import type { FileHandle } from "node:fs/promises";

export const OTHER_FORM = Symbol("not a manifest in writeManifest's line form");

/** The files of a manifest as read: how many, and their total size. */
export class FileTally {
  readonly length: number;
  private readonly bytes: number;

  constructor(length: number, bytes: number) {
    this.length = length;
    this.bytes = bytes;
  }

  totalBytes(): number {
    return this.bytes;
  }
}

export interface ManifestLines {
  /** Every field but `files`, as parsed (checked by the caller). */
  readonly head: Record<string, unknown>;
  readonly files: FileTally;
}

/** Bytes read at a time. */
const PIECE = 1 << 20;

const FILES_OPEN = '  "files": [';
const FILES_EMPTY = '  "files": []';
const FILES_CLOSE = "  ]";

/** A JSON string (RFC 8259: no raw control characters, only the defined escapes). */
const JSON_STRING = String.raw`"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"`;
/** One file as writeManifest writes it, with the comma that follows all but the last. */
const FILE_LINE = new RegExp(
  String.raw`^    \{"path":${JSON_STRING},"bytes":(0|[1-9][0-9]{0,15})(?:,"digest":${JSON_STRING})?\},?$`,
);

/**
 * The manifest read from `handle` (at its start), or OTHER_FORM. `size`: the file's size, to
 * read a small manifest (the usual few hundred bytes) without a 1 MiB buffer.
 */
export async function readManifestLines(
  handle: FileHandle,
  size: number,
): Promise<ManifestLines | typeof OTHER_FORM> {
  const headLines: string[] = [];
  let count = 0;
  let bytes = 0;
  let lastHadComma = false;
  // "head": the fields; "files": one file per line; "close": `}` expected; "end": only EOF.
  // (Read through at() below: the compiler does not see onLine change it.)
  let state: "head" | "files" | "close" | "end" = "head";
  const at = (): typeof state => state;

  const onLine = (line: string): boolean => {
    switch (state) {
      case "head":
        if (line === FILES_OPEN) state = "files";
        else if (line === FILES_EMPTY) state = "close";
        else headLines.push(line);
        return true;
      case "files": {
        if (line === FILES_CLOSE) {
          // JSON: no comma after the last file, one after each other.
          if (count === 0 || lastHadComma) return false;
          state = "close";
          return true;
        }
        if (count > 0 && !lastHadComma) return false;
        const match = FILE_LINE.exec(line);
        const size = match === null ? Number.NaN : Number(match[1]);
        if (!Number.isSafeInteger(size)) return false;
        count += 1;
        bytes += size;
        lastHadComma = line.endsWith(",");
        return true;
      }
      case "close":
        if (line !== "}") return false;
        state = "end";
        return true;
      case "end":
        return false;
    }
  };

  // One byte more than the size: the read that finds the end needs no second buffer.
  const buffer = Buffer.allocUnsafe(Math.min(PIECE, size + 1));
  let carry: Buffer | undefined;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
    if (bytesRead === 0) break;
    const piece =
      carry === undefined
        ? buffer.subarray(0, bytesRead)
        : Buffer.concat([carry, buffer.subarray(0, bytesRead)]);
    carry = undefined;
    const complete = piece.lastIndexOf(10) + 1;
    // A "\n" byte is never inside a UTF-8 sequence: the complete lines decode alone.
    if (complete > 0) {
      const lines = piece.toString("utf8", 0, complete - 1).split("\n");
      for (const line of lines) if (!onLine(line)) return OTHER_FORM;
    }
    if (complete < piece.length) carry = Buffer.from(piece.subarray(complete));
  }
  // writeManifest ends with "}\n": nothing may follow it, not even a line without its "\n".
  if (at() !== "end" || carry !== undefined) return OTHER_FORM;
  let head: unknown;
  try {
    const fields = headLines.join("\n");
    if (!fields.endsWith(",")) return OTHER_FORM;
    head = JSON.parse(`${fields.slice(0, -1)}\n}`);
  } catch {
    return OTHER_FORM;
  }
  if (typeof head !== "object" || head === null || Array.isArray(head) || "files" in head) {
    return OTHER_FORM;
  }
  return { head: head as Record<string, unknown>, files: new FileTally(count, bytes) };
}
