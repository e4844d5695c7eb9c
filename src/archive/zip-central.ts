/**
 * The zip central directory, read and validated from a local file with positional reads
 * (APPNOTE.TXT 6.3.10, https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT).
 *
 * The central directory is the only index dsfetch trusts: local headers are never scanned
 * for (a streaming parser that looks for signatures can be fooled by data that contains them,
 * and finds data descriptors by guessing: node-unzipper PR #338). Everything here is strict,
 * because tools that read an ambiguous zip differently are an attack surface of their own
 * (CVE-2013-4787 "Android master key", CVE-2017-13156 "Janus"): exactly one End of Central
 * Directory record that ends the file, no end record signature in its comment, Zip64 records
 * that agree with it, a central directory that fills exactly the space it declares (read a
 * window at a time: DirectoryWindow), and no multi-disk archives.
 */
import { readSync } from "node:fs";
import { crc32 } from "node:zlib";
import { DsfetchError, type ErrorCode } from "../errors.ts";
import { MAX_NAME_CHARACTERS } from "./limits.ts";

export interface CentralEntry {
  /** Position in the central directory (0-based). */
  readonly index: number;
  /**
   * The name exactly as stored (the local header must repeat these bytes): bytes
   * rawNameStart.. of the directory's rawNames (rawNameOf). Not a Buffer view per entry:
   * ~70 B each, and they kept the whole directory alive (~460 B per entry with the parsed
   * fields, 230 MB for 500,000 entries: util/packed-files.ts).
   */
  readonly rawNameStart: number;
  readonly rawNameLength: number;
  /** The decoded name (UTF-8, the Info-ZIP Unicode Path field, or CP437). */
  readonly name: string;
  /** Its name had bytes past ASCII that were read as CP437 (decodeName): said to the user. */
  readonly cp437?: true;
  readonly versionMadeBy: number;
  readonly flags: number;
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly localHeaderOffset: number;
  readonly externalAttributes: number;
  /** Whether the entry carries an AES encryption field (WinZip AE-x, extra field 0x9901). */
  readonly aes: boolean;
}

export interface CentralDirectory {
  readonly entries: CentralEntry[];
  /** Every entry's name exactly as stored, one after the other. */
  readonly rawNames: Buffer;
  /** Where the central directory starts: every entry's data must end before it. */
  readonly offset: number;
  readonly size: number;
  readonly zip64: boolean;
}

/**
 * Makes errors that name the dataset and the entry (when there is one); what to do is the
 * hint, not repeated in the message (the CLI prints both: review, session 22).
 */
export class ZipErrors {
  readonly dataset: string;

  constructor(dataset: string) {
    this.dataset = dataset;
  }

  archive(code: ErrorCode, problem: string, advice: string): DsfetchError {
    return new DsfetchError(code, `dataset "${this.dataset}": the zip archive ${problem}`, {
      dataset: this.dataset,
      hint: advice,
    });
  }

  entry(code: ErrorCode, entryName: string, problem: string, advice: string): DsfetchError {
    return new DsfetchError(
      code,
      `dataset "${this.dataset}": zip entry ${quoteName(entryName)} ${problem}`,
      { dataset: this.dataset, hint: advice },
    );
  }

  /** A structural defect: corrupt, truncated, or built to be read differently by other tools. */
  corrupt(problem: string): DsfetchError {
    return this.archive("ARCHIVE_INVALID", problem, REBUILD);
  }

  corruptEntry(entryName: string, problem: string): DsfetchError {
    return this.entry("ARCHIVE_INVALID", entryName, problem, REBUILD);
  }
}

export const REBUILD =
  "the archive is corrupt, truncated or deliberately ambiguous: rebuild it with a standard tool (zip, Python zipfile, 7-Zip) and upload it again";

/** A name for messages: JSON-quoted (control characters escaped) and at most 200 characters. */
export function quoteName(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

const EOCD_SIGNATURE = 0x06054b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const ZIP64_EOCD_SIZE = 56;
const CENTRAL_SIGNATURE = 0x02014b50;
const CENTRAL_HEADER_SIZE = 46;
/** The smallest local file header (30 bytes) — a lower bound used before reading it. */
export const LOCAL_HEADER_SIZE = 30;
const MAX_COMMENT = 0xffff;
/** Zero bytes accepted after the End of Central Directory record (readEndRecord). */
const MAX_ZERO_PADDING = 64 * 1024;

export const EXTRA_ZIP64 = 0x0001;
export const EXTRA_AES = 0x9901;
const EXTRA_UNICODE_PATH = 0x7075;

/**
 * Where a zip's bytes are read from: a file descriptor, or a function reading like readSync
 * (plan reads the central directory by ranged requests into memory: plan/zip-declared.ts).
 */
export type ZipSource =
  | number
  | ((buffer: Buffer, offset: number, length: number, position: number) => number);

/** Reads exactly `length` bytes at `position`, or fails: the file is shorter than it says. */
export function readFully(
  fd: ZipSource,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
  errors: ZipErrors,
): void {
  let done = 0;
  while (done < length) {
    const n =
      typeof fd === "number"
        ? readSync(fd, buffer, offset + done, length - done, position + done)
        : fd(buffer, offset + done, length - done, position + done);
    if (n === 0) throw errors.corrupt("ends before its declared end (truncated file)");
    done += n;
  }
}

/** Bytes of the central directory per read (DirectoryWindow). */
const DIRECTORY_READ = 8 * 1024 * 1024;
/** The largest central directory record: the header and three 16-bit lengths (APPNOTE 4.3.12). */
const MAX_CENTRAL_RECORD = CENTRAL_HEADER_SIZE + 3 * 0xffff;
/** Entries checked between two reports of progress (~10 ms of work each). */
export const PROGRESS_EVERY = 4096;

function readAt(fd: ZipSource, position: number, length: number, errors: ZipErrors): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  readFully(fd, buffer, 0, length, position, errors);
  return buffer;
}

/** An unsigned 64-bit field as a Number, refusing values beyond 2^53 (no real file is that big). */
function u64(buffer: Buffer, offset: number, what: string, errors: ZipErrors): number {
  const value = buffer.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw errors.corrupt(`declares an impossible ${what} (${value})`);
  }
  return Number(value);
}

/** Extra fields as [id, data] pairs. Trailing bytes too short for a field are ignored (padding). */
export function parseExtra(extra: Buffer): Map<number, Buffer> | { duplicate: number } {
  const fields = new Map<number, Buffer>();
  let pos = 0;
  while (pos + 4 <= extra.length) {
    const id = extra.readUInt16LE(pos);
    const size = extra.readUInt16LE(pos + 2);
    if (pos + 4 + size > extra.length) break;
    // Two Zip64 or Unicode Path fields: which one counts depends on the reader. Refuse.
    if (fields.has(id) && (id === EXTRA_ZIP64 || id === EXTRA_UNICODE_PATH || id === EXTRA_AES)) {
      return { duplicate: id };
    }
    if (!fields.has(id)) fields.set(id, extra.subarray(pos + 4, pos + 4 + size));
    pos += 4 + size;
  }
  return fields;
}

// ignoreBOM: keep a leading U+FEFF as part of the name, as unzip and Python's zipfile do. By
// default TextDecoder strips it: "\uFEFFlabels.csv" was published as "labels.csv", and beside a
// real labels.csv refused as a duplicate (review, 2026-12-06).
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// Code page 437, bytes 0x80-0xff: the name encoding of zips without the UTF-8 flag (APPNOTE D.1).
const CP437_HIGH =
  "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0";

function isAscii(bytes: Buffer): boolean {
  for (const byte of bytes) if (byte >= 0x80) return false;
  return true;
}

function decodeUtf8(bytes: Buffer): string | undefined {
  try {
    return UTF8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * The name in an entry's Info-ZIP Unicode Path field (0x7075), when it applies: the name is not
 * flagged UTF-8 (general purpose bit 11) and the field's CRC matches the stored name (as unzip
 * does; a stale field is ignored, APPNOTE 4.6.9).
 */
function unicodePathName(
  raw: Buffer,
  flags: number,
  extra: Map<number, Buffer>,
): Buffer | undefined {
  if ((flags & 0x0800) !== 0) return undefined;
  const unicode = extra.get(EXTRA_UNICODE_PATH);
  if (unicode === undefined || unicode.length < 5 || unicode[0] !== 1) return undefined;
  return unicode.readUInt32LE(1) === crc32(raw) ? unicode.subarray(5) : undefined;
}

/** Hosts of "version made by" (APPNOTE 4.4.2.2) whose names are bytes, not CP437: Unix, OS X. */
const BYTE_NAME_HOSTS = new Set([3, 19]);

/**
 * Decodes an entry name: UTF-8 when general purpose bit 11 says so; else the Unicode Path
 * field's name (`unicode`, from unicodePathName); else ASCII; else UTF-8 when the bytes are
 * valid UTF-8 (what Linux tools write without setting the flag); else, for an entry made on
 * Unix or OS X, refused (undefined: its name is bytes in some other encoding, as a tar's
 * non-UTF-8 name is refused); else CP437, the standard's encoding of names without the flag
 * (APPNOTE D.1). Whatever comes out is then checked by checkEntryPath like any other name.
 *
 * Why the refusal: Info-ZIP's zip on Linux stores a Latin-1 name `caf\xe9.txt` as is, and it
 * was published as `cafΘ.txt` (CP437) with exit 0, where unzip writes the bytes (fidelity
 * tester, 2026-12-07).
 */
function decodeName(
  raw: Buffer,
  flags: number,
  unicode: Buffer | undefined,
  versionMadeBy: number,
): { readonly name: string; readonly cp437: boolean } | undefined {
  const decoded = (name: string | undefined) =>
    name === undefined ? undefined : { name, cp437: false };
  if ((flags & 0x0800) !== 0) return decoded(decodeUtf8(raw));
  if (unicode !== undefined) return decoded(decodeUtf8(unicode));
  if (isAscii(raw)) return decoded(raw.toString("latin1"));
  const utf8 = decodeUtf8(raw);
  if (utf8 !== undefined) return decoded(utf8);
  if (BYTE_NAME_HOSTS.has(versionMadeBy >> 8)) return undefined;
  let out = "";
  for (const byte of raw)
    out += byte < 0x80 ? String.fromCharCode(byte) : (CP437_HIGH[byte - 0x80] ?? "?");
  return { name: out, cp437: true };
}

/** The end records' signatures, as they appear in the file (little-endian). */
const END_SIGNATURES: ReadonlyArray<{ bytes: Buffer; what: string }> = [
  [EOCD_SIGNATURE, "an End of Central Directory record's (PK\\5\\6)"] as const,
  [ZIP64_EOCD_SIGNATURE, "a Zip64 End of Central Directory record's (PK\\6\\6)"] as const,
  [ZIP64_LOCATOR_SIGNATURE, "a Zip64 End of Central Directory locator's (PK\\6\\7)"] as const,
].map(([signature, what]) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(signature);
  return { bytes, what };
});

/** Which end record's signature `comment` contains, if any (for messages). */
function commentSignature(comment: Buffer): string | undefined {
  return END_SIGNATURES.find(({ bytes }) => comment.includes(bytes))?.what;
}

interface EndRecord {
  readonly entries: number;
  readonly cdSize: number;
  readonly cdOffset: number;
  /** Where the records after the central directory begin: the CD must end exactly here. */
  readonly cdEnd: number;
  readonly zip64: boolean;
}

/**
 * Finds the one End of Central Directory record. It must end the file exactly (its comment
 * running to the last byte): a second candidate that also fits — a fake record hidden in the
 * comment — makes the archive ambiguous, since readers that scan from the start and readers
 * that scan from the end would see different archives.
 */
function readEndRecord(fd: ZipSource, fileSize: number, errors: ZipErrors): EndRecord {
  if (fileSize < EOCD_SIZE) {
    throw errors.corrupt(
      `is ${fileSize} bytes long, too short for a zip file (no End of Central Directory record): the object is not a zip archive or it is truncated`,
    );
  }
  const tailLength = Math.min(
    fileSize,
    EOCD_SIZE + MAX_COMMENT + ZIP64_LOCATOR_SIZE + MAX_ZERO_PADDING,
  );
  const tailStart = fileSize - tailLength;
  const tail = readAt(fd, tailStart, tailLength, errors);
  // Zeros after the record are padding (bsdtar writing to a pipe fills its last 10240-byte
  // block; `dd conv=sync`): accepted, as after gzip, bzip2 and xz data. unzip and Python read
  // such a zip; it was refused as "truncated or has bytes appended" (fidelity tester,
  // 2026-12-07). Anything else after the record still is.
  let paddedFrom = tail.length;
  const paddingFloor = Math.max(0, tail.length - MAX_ZERO_PADDING);
  while (paddedFrom > paddingFloor && tail[paddedFrom - 1] === 0) paddedFrom--;
  const candidates: number[] = [];
  for (let i = tail.length - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) !== EOCD_SIGNATURE) continue;
    const recordEnd = i + EOCD_SIZE + tail.readUInt16LE(i + 20);
    if (recordEnd <= tail.length && recordEnd >= paddedFrom) candidates.push(i);
  }
  const at = candidates[0];
  if (at === undefined) {
    // Zeros all through the padding window: said as such (fidelity tester, 2026-12-07).
    if (paddedFrom === paddingFloor && paddingFloor > 0) {
      throw errors.corrupt(
        `ends with more than ${MAX_ZERO_PADDING / 1024} KiB of zero bytes, more than the padding dsfetch accepts after a zip: the object is not a zip archive, or it is truncated or has bytes appended`,
      );
    }
    throw errors.corrupt(
      "has no End of Central Directory record at its end: the object is not a zip archive, or it is truncated or has bytes appended",
    );
  }
  if (candidates.length > 1) {
    throw errors.corrupt(
      "has more than one End of Central Directory record that could end the file (one hidden in the archive comment), so tools would disagree on its contents",
    );
  }
  // A record signature anywhere in the comment, even one that does not end the file: readers
  // that take the last PK\5\6 of the tail (Python's zipfile) or look for Zip64 records near it
  // would read another archive than this one (review, 2026-12-06). A comment is free text;
  // no tool writes these bytes into one.
  const signature = commentSignature(tail.subarray(at + EOCD_SIZE));
  if (signature !== undefined) {
    throw errors.corrupt(
      `has a comment that contains ${signature} signature, so other tools may read another archive than this one`,
    );
  }
  const eocd = tail.subarray(at, at + EOCD_SIZE);
  const eocdPosition = tailStart + at;
  const disk = eocd.readUInt16LE(4);
  const cdDisk = eocd.readUInt16LE(6);
  const entriesOnDisk = eocd.readUInt16LE(8);
  const entries = eocd.readUInt16LE(10);
  const cdSize = eocd.readUInt32LE(12);
  const cdOffset = eocd.readUInt32LE(16);

  const locatorAt = at - ZIP64_LOCATOR_SIZE;
  const hasLocator = locatorAt >= 0 && tail.readUInt32LE(locatorAt) === ZIP64_LOCATOR_SIGNATURE;
  if (!hasLocator) {
    if (disk !== 0 || cdDisk !== 0 || entriesOnDisk !== entries) {
      throw errors.archive(
        "ARCHIVE_INVALID",
        "is one part of a split (multi-disk) archive",
        "join the parts into one archive (zip -s 0 split.zip --out whole.zip) and upload that",
      );
    }
    return { entries, cdSize, cdOffset, cdEnd: eocdPosition, zip64: false };
  }

  // Zip64 (APPNOTE 4.3.14-4.3.15): the locator points at the Zip64 EOCD record, which must
  // end exactly where the locator starts.
  const locator = tail.subarray(locatorAt, locatorAt + ZIP64_LOCATOR_SIZE);
  const locatorPosition = eocdPosition - ZIP64_LOCATOR_SIZE;
  const recordDisk = locator.readUInt32LE(4);
  const recordOffset = u64(locator, 8, "Zip64 record offset", errors);
  const totalDisks = locator.readUInt32LE(16);
  if (recordDisk !== 0 || totalDisks > 1) {
    throw errors.archive(
      "ARCHIVE_INVALID",
      "is one part of a split (multi-disk) Zip64 archive",
      "join the parts into one archive (zip -s 0 split.zip --out whole.zip) and upload that",
    );
  }
  if (recordOffset + ZIP64_EOCD_SIZE > locatorPosition) {
    throw errors.corrupt("has a Zip64 locator that points outside the file");
  }
  const record = readAt(fd, recordOffset, ZIP64_EOCD_SIZE, errors);
  if (record.readUInt32LE(0) !== ZIP64_EOCD_SIGNATURE) {
    throw errors.corrupt(
      "has a Zip64 locator that does not point at a Zip64 End of Central Directory record",
    );
  }
  const recordSize = u64(record, 4, "Zip64 record size", errors);
  if (recordSize < ZIP64_EOCD_SIZE - 12 || recordOffset + 12 + recordSize !== locatorPosition) {
    throw errors.corrupt(
      "has a Zip64 End of Central Directory record whose size does not match its place in the file",
    );
  }
  const disk64 = record.readUInt32LE(16);
  const cdDisk64 = record.readUInt32LE(20);
  const entriesOnDisk64 = u64(record, 24, "entry count", errors);
  const entries64 = u64(record, 32, "entry count", errors);
  const cdSize64 = u64(record, 40, "central directory size", errors);
  const cdOffset64 = u64(record, 48, "central directory offset", errors);
  if (disk64 !== 0 || cdDisk64 !== 0 || entriesOnDisk64 !== entries64) {
    throw errors.archive(
      "ARCHIVE_INVALID",
      "is one part of a split (multi-disk) Zip64 archive",
      "join the parts into one archive (zip -s 0 split.zip --out whole.zip) and upload that",
    );
  }
  // Where the classic record holds a real value (not the 0xFFFF… marker), it must agree with
  // the Zip64 record: otherwise readers with and without Zip64 support see different archives.
  const agree =
    (entries === 0xffff || entries === entries64) &&
    (cdSize === 0xffffffff || cdSize === cdSize64) &&
    (cdOffset === 0xffffffff || cdOffset === cdOffset64);
  if (!agree) {
    throw errors.corrupt(
      "has an End of Central Directory record that disagrees with its Zip64 record",
    );
  }
  return {
    entries: entries64,
    cdSize: cdSize64,
    cdOffset: cdOffset64,
    cdEnd: recordOffset,
    zip64: true,
  };
}

/**
 * Reads and validates the whole central directory. Refuses an entry count above `maxEntries`
 * before reading it (a hostile count must not cost memory).
 */
export function readCentralDirectory(
  fd: ZipSource,
  fileSize: number,
  maxEntries: number,
  errors: ZipErrors,
  onProgress: () => void = () => {},
  maxNameCharacters: number = MAX_NAME_CHARACTERS,
): CentralDirectory {
  const end = readEndRecord(fd, fileSize, errors);
  if (end.entries > maxEntries) {
    throw errors.archive(
      "ARCHIVE_INVALID",
      `has ${end.entries} entries, more than the limit of ${maxEntries}`,
      "split the dataset into several archives, or pack small files together (for example into shards)",
    );
  }
  // The central directory ends exactly where the end records begin (no prepended data with
  // shifted offsets, no gap that other tools would fill differently).
  if (end.cdOffset + end.cdSize !== end.cdEnd) {
    throw errors.corrupt(
      `declares its central directory at bytes ${end.cdOffset}-${end.cdOffset + end.cdSize}, which is not where the directory ends (byte ${end.cdEnd}): the offsets are out of range or the file has data prepended`,
    );
  }
  if (end.cdSize < end.entries * CENTRAL_HEADER_SIZE) {
    throw errors.corrupt(
      `declares ${end.entries} entries in a central directory of only ${end.cdSize} bytes`,
    );
  }
  // Each record is at most 46 bytes and three 16-bit lengths: a directory larger than its entry
  // count allows holds bytes no entry explains (a hostile size; review, 2026-12-06).
  if (end.cdSize > end.entries * MAX_CENTRAL_RECORD) {
    throw errors.corrupt(
      `declares ${end.entries} entries in a central directory of ${end.cdSize} bytes, more than ${end.entries} entries can fill`,
    );
  }
  const cd = new DirectoryWindow(fd, end.cdOffset, end.cdSize, errors, onProgress);
  const entries: CentralEntry[] = new Array(end.entries);
  // Every raw name, copied out of the directory window: the directory's size less the headers
  // bounds their total, and so does maxNameCharacters (below); trimmed at the end.
  const allNames = Buffer.allocUnsafe(
    Math.min(end.cdSize - end.entries * CENTRAL_HEADER_SIZE, maxNameCharacters),
  );
  // Every name is kept (the file list becomes the manifest): bounded together, as a tar's
  // paths and link targets are (limits.ts maxNameCharacters; review, 2026-12-05). Counted:
  // the raw names, and the Unicode Path field's names where they are the names kept (each
  // up to 64 KiB behind a 1-byte raw name: 200,000 of 4,000 bytes kept 800 MB; review,
  // 2026-12-06).
  let nameBytes = 0;
  /** Bytes of allNames filled. */
  let rawBytes = 0;
  let pos = 0;
  for (let index = 0; index < end.entries; index++) {
    if (index % PROGRESS_EVERY === PROGRESS_EVERY - 1) onProgress();
    if (pos + CENTRAL_HEADER_SIZE > end.cdSize) throw missingHeader(index, end.entries, errors);
    const header = cd.view(pos, CENTRAL_HEADER_SIZE);
    if (header.readUInt32LE(0) !== CENTRAL_SIGNATURE) {
      throw missingHeader(index, end.entries, errors);
    }
    const nameLength = header.readUInt16LE(28);
    const extraLength = header.readUInt16LE(30);
    const commentLength = header.readUInt16LE(32);
    const recordLength = CENTRAL_HEADER_SIZE + nameLength + extraLength + commentLength;
    if (pos + recordLength > end.cdSize) {
      throw errors.corrupt(
        `has a damaged central directory (entry ${index + 1} runs past its end)`,
      );
    }
    const record = cd.view(pos, recordLength);
    const versionMadeBy = record.readUInt16LE(4);
    const flags = record.readUInt16LE(8);
    const method = record.readUInt16LE(10);
    const crc = record.readUInt32LE(16);
    let compressedSize = record.readUInt32LE(20);
    let uncompressedSize = record.readUInt32LE(24);
    let diskStart = record.readUInt16LE(34);
    const externalAttributes = record.readUInt32LE(38);
    let localHeaderOffset = record.readUInt32LE(42);
    const rawName = record.subarray(CENTRAL_HEADER_SIZE, CENTRAL_HEADER_SIZE + nameLength);
    const extraStart = CENTRAL_HEADER_SIZE + nameLength;
    const extra = parseExtra(record.subarray(extraStart, extraStart + extraLength));
    const lossyName = rawName.toString("utf8");
    if (!(extra instanceof Map)) {
      throw errors.corruptEntry(
        lossyName,
        `has two extra fields of type 0x${extra.duplicate.toString(16)}, which tools resolve differently`,
      );
    }
    const unicode = unicodePathName(rawName, flags, extra);
    nameBytes += nameLength + (unicode?.length ?? 0);
    if (nameBytes > maxNameCharacters) {
      throw errors.archive(
        "ARCHIVE_INVALID",
        `has names longer than ${maxNameCharacters} bytes together (at entry ${index + 1} of ${end.entries}${unicode === undefined ? "" : ", counting the names of Unicode Path extra fields"}): more than dsfetch keeps in memory for one dataset`,
        "split the dataset into several archives, or use shorter names",
      );
    }
    const decoded = decodeName(rawName, flags, unicode, versionMadeBy);
    if (decoded === undefined) {
      throw (flags & 0x0800) !== 0 || unicode !== undefined
        ? errors.corruptEntry(lossyName, "has a name that is marked UTF-8 but is not valid UTF-8")
        : errors.entry(
            "ARCHIVE_INVALID",
            lossyName,
            `has a name that is not valid UTF-8 (bytes ${rawName.toString("hex")}), made on ${versionMadeBy >> 8 === 3 ? "Unix" : "OS X"}: which characters it means cannot be known, and dsfetch would create a file with another name`,
            "nothing was published: re-create the archive with UTF-8 file names (convmv -f <encoding> -t utf8 renames the files first)",
          );
    }
    const { name } = decoded;

    // Zip64 extended information (APPNOTE 4.5.3): only the fields whose 32-bit value is the
    // 0xFFFFFFFF marker are present, in this order.
    const needs =
      (uncompressedSize === 0xffffffff ? 1 : 0) +
      (compressedSize === 0xffffffff ? 1 : 0) +
      (localHeaderOffset === 0xffffffff ? 1 : 0);
    if (needs > 0 || diskStart === 0xffff) {
      const zip64 = extra.get(EXTRA_ZIP64);
      const wanted = needs * 8 + (diskStart === 0xffff ? 4 : 0);
      if (zip64 === undefined || zip64.length < wanted) {
        throw errors.corruptEntry(
          name,
          "declares Zip64 sizes or offsets but has no (or a too short) Zip64 extra field",
        );
      }
      let at = 0;
      if (uncompressedSize === 0xffffffff) {
        uncompressedSize = u64(zip64, at, "entry size", errors);
        at += 8;
      }
      if (compressedSize === 0xffffffff) {
        compressedSize = u64(zip64, at, "entry size", errors);
        at += 8;
      }
      if (localHeaderOffset === 0xffffffff) {
        localHeaderOffset = u64(zip64, at, "entry offset", errors);
        at += 8;
      }
      if (diskStart === 0xffff) diskStart = zip64.readUInt32LE(at);
    }
    if (diskStart !== 0) {
      throw errors.corruptEntry(name, "starts on another disk of a split archive");
    }
    rawName.copy(allNames, rawBytes);
    rawBytes += nameLength;
    entries[index] = {
      index,
      rawNameStart: rawBytes - nameLength,
      rawNameLength: nameLength,
      name,
      ...(decoded.cp437 ? { cp437: true as const } : {}),
      versionMadeBy,
      flags,
      method,
      crc32: crc,
      compressedSize,
      uncompressedSize,
      localHeaderOffset,
      externalAttributes,
      aes: extra.has(EXTRA_AES),
    };
    pos += recordLength;
  }
  // Found without reading them (DirectoryWindow reads no further than one window).
  if (pos !== end.cdSize) {
    throw errors.corrupt(
      `has ${end.cdSize - pos} unexplained bytes after its last central directory entry (the entry count is wrong)`,
    );
  }
  return {
    entries,
    rawNames: Buffer.from(allNames.subarray(0, rawBytes)),
    offset: end.cdOffset,
    size: end.cdSize,
    zip64: end.zip64,
  };
}

function missingHeader(index: number, count: number, errors: ZipErrors): DsfetchError {
  return errors.corrupt(
    `has a damaged central directory (entry ${index + 1} of ${count} is missing or not a central directory header)`,
  );
}

/**
 * The central directory, read DIRECTORY_READ bytes at a time as its records are parsed, the
 * part of a record a read cut off carried over to the next. Read whole into one Buffer of
 * its declared size, a directory declaring 3.5 GB (one real record, then zeros; or a valid
 * Zip64 one with 64 KiB extra fields and comments) took 3.5 GB of memory outside the V8 heap
 * before its records were checked (review, 2026-12-06). Now memory is one window whatever the
 * size, and at most one window past the last record is read: bytes no record explains are
 * an error without reading them all.
 * Each read is progress (the stall watchdog must see a slow read move: zip-in-worker.ts).
 */
class DirectoryWindow {
  private readonly buffer: Buffer;
  /** Directory offsets of the bytes buffer[0, end - start) holds. */
  private start = 0;
  private end = 0;
  private readonly fd: ZipSource;
  private readonly offset: number;
  private readonly size: number;
  private readonly errors: ZipErrors;
  private readonly onProgress: () => void;

  constructor(
    fd: ZipSource,
    offset: number,
    size: number,
    errors: ZipErrors,
    onProgress: () => void,
  ) {
    this.fd = fd;
    this.offset = offset;
    this.size = size;
    this.errors = errors;
    this.onProgress = onProgress;
    // A record (at most MAX_CENTRAL_RECORD bytes) always fits with what came before it.
    this.buffer = Buffer.allocUnsafe(Math.min(size, DIRECTORY_READ));
  }

  /**
   * Directory bytes [position, position + length), valid until the next call: positions only
   * move forward, position + length <= size, length <= MAX_CENTRAL_RECORD.
   */
  view(position: number, length: number): Buffer {
    if (position + length > this.end) {
      const keep = this.end - position;
      this.buffer.copyWithin(0, position - this.start, this.end - this.start);
      const more = Math.min(this.buffer.length - keep, this.size - this.end);
      readFully(this.fd, this.buffer, keep, more, this.offset + this.end, this.errors);
      this.start = position;
      this.end += more;
      this.onProgress();
    }
    const from = position - this.start;
    return this.buffer.subarray(from, from + length);
  }
}

/** The name of `entry` exactly as stored, from its directory's `rawNames`. */
export function rawNameOf(rawNames: Buffer, entry: CentralEntry): Buffer {
  return rawNames.subarray(entry.rawNameStart, entry.rawNameStart + entry.rawNameLength);
}
