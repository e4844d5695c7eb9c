/**
 * What an archive object really contains, from its first bytes (SPEC §5: "a file whose
 * contents don't match its extension fails clearly"). Pure: no I/O. The caller reads the
 * first {@link MAGIC_BYTES} bytes (fewer when the object is smaller).
 */
import { basename } from "node:path";
import { DsfetchError } from "../errors.ts";
import { type ArchiveFormat, archiveFormatOf } from "./formats.ts";

/** How many leading bytes detectFormat needs to recognise every format (one tar header). */
export const MAGIC_BYTES = 512;

export type DetectedFormat = "gzip" | "bzip2" | "xz" | "zip" | "tar";

/** The decoding steps an archive object needs: a decompressor (or none), then a container. */
export interface CodecChain {
  readonly compression: "gzip" | "bzip2" | "xz" | "none";
  readonly container: "tar" | "zip";
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const TAR_BLOCK = 512;

/**
 * The format the first bytes of a file show, or undefined when none is recognised.
 * - gzip: 1f 8b 08 (RFC 1952, deflate is the only method defined)
 * - bzip2: "BZh" and a block size digit 1-9
 * - xz: fd "7zXZ" 00
 * - zip: "PK\3\4" (a local file header), "PK\5\6" (an empty zip), "PK\7\8" (spanning marker)
 * - tar: "ustar" at offset 257 (POSIX ustar and GNU), or a pre-POSIX v7 header whose checksum
 *   is right, or an all-zero first block (an empty archive: only its end marker)
 */
export function detectFormat(firstBytes: Buffer): DetectedFormat | undefined {
  const b = firstBytes;
  if (b.length >= 3 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 0x08) return "gzip";
  if (
    b.length >= 4 &&
    b[0] === 0x42 &&
    b[1] === 0x5a &&
    b[2] === 0x68 &&
    (b[3] ?? 0) >= 0x31 &&
    (b[3] ?? 0) <= 0x39
  ) {
    return "bzip2";
  }
  if (b.length >= 6 && b.subarray(0, 6).equals(XZ_MAGIC)) return "xz";
  if (
    b.length >= 4 &&
    b[0] === 0x50 &&
    b[1] === 0x4b &&
    ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6) || (b[2] === 7 && b[3] === 8))
  ) {
    return "zip";
  }
  if (b.length >= TAR_BLOCK) {
    const block = b.subarray(0, TAR_BLOCK);
    if (block.toString("latin1", 257, 262) === "ustar") return "tar";
    if (isZeroBlock(block)) return "tar";
    if (tarChecksumMatches(block)) return "tar";
  }
  return undefined;
}

/** True when all 512 bytes are zero (a tar end-of-archive block). */
export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < TAR_BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * The checksum stored in a tar header (octal, offset 148, 8 bytes), or undefined when the
 * field is not a number.
 */
export function storedTarChecksum(block: Buffer): number | undefined {
  let i = 148;
  const end = 156;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i] ?? 0;
    if (c >= 0x30 && c <= 0x37) {
      value = value * 8 + (c - 0x30);
      digits++;
    } else break;
  }
  if (digits === 0) return undefined;
  for (; i < end; i++) if (block[i] !== 0 && block[i] !== 0x20) return undefined;
  return value;
}

/**
 * Whether a 512-byte tar header's checksum is right. The sum is of all bytes with the
 * checksum field read as spaces; POSIX says unsigned bytes, but old Sun and some other tars
 * summed signed chars, so both are accepted (as GNU tar does).
 */
export function tarChecksumMatches(block: Buffer): boolean {
  const stored = storedTarChecksum(block);
  if (stored === undefined) return false;
  // The checksum field counts as 8 spaces.
  let unsigned = 8 * 0x20;
  for (let i = 0; i < 148; i++) unsigned += block[i] ?? 0;
  for (let i = 156; i < TAR_BLOCK; i++) unsigned += block[i] ?? 0;
  if (stored === unsigned) return true;
  let signed = 8 * 0x20;
  for (let i = 0; i < TAR_BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const c = block[i] ?? 0;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === signed;
}

const DESCRIPTIONS: Record<DetectedFormat, string> = {
  gzip: "gzip data",
  bzip2: "bzip2 data",
  xz: "xz data",
  zip: "a zip archive",
  tar: "an uncompressed tar archive",
};

const EXTENSION_FOR: Record<DetectedFormat, string> = {
  gzip: ".tar.gz",
  bzip2: ".tar.bz2",
  xz: ".tar.xz",
  zip: ".zip",
  tar: ".tar",
};

const EXPECTED: Record<ArchiveFormat, readonly CodecChain[]> = {
  zip: [{ compression: "none", container: "zip" }],
  tar: [{ compression: "none", container: "tar" }],
  "tar.gz": [{ compression: "gzip", container: "tar" }],
  "tar.bz2": [{ compression: "bzip2", container: "tar" }],
  "tar.xz": [{ compression: "xz", container: "tar" }],
  // ".tar.gz2" is used for both gzip and bzip2 tarballs: the bytes decide.
  "tar.gz2": [
    { compression: "gzip", container: "tar" },
    { compression: "bzip2", container: "tar" },
  ],
};

function chainOf(format: DetectedFormat): CodecChain {
  switch (format) {
    case "zip":
      return { compression: "none", container: "zip" };
    case "tar":
      return { compression: "none", container: "tar" };
    default:
      return { compression: format, container: "tar" };
  }
}

/**
 * Checks that an archive object's first bytes match the format its name promises and
 * returns the decoding chain to use. Throws ARCHIVE_INVALID otherwise, naming the dataset,
 * the key, what was expected and what was found.
 *
 * The first bytes of a compressed tarball only show the compression; the tar inside is
 * checked by the extractor (its first header must have a valid checksum).
 */
export function checkMagic(
  expected: ArchiveFormat,
  firstBytes: Buffer,
  dataset: string,
  key: string,
): CodecChain {
  const found = detectFormat(firstBytes);
  const allowed = EXPECTED[expected];
  if (found !== undefined) {
    const chain = chainOf(found);
    if (allowed.some((c) => c.compression === chain.compression && c.container === chain.container))
      return chain;
  }
  const wanted = allowed
    .map((c) => (c.compression === "none" ? `a ${c.container} archive` : `${c.compression} data`))
    .join(" or ");
  const what =
    firstBytes.length === 0
      ? "the object is empty"
      : found === undefined
        ? "its first bytes match no known archive format"
        : `its contents are ${DESCRIPTIONS[found]}`;
  const hint =
    found === undefined
      ? `check that ${key} really is ${wanted}, or rename it without the archive extension to fetch it as a plain file`
      : `rename the object to end in ${EXTENSION_FOR[found]} (or re-create it as ${wanted})`;
  throw new DsfetchError(
    "ARCHIVE_INVALID",
    // The extension as the key has it (".tbz" was said as ".tar.bz2": fidelity tester).
    `${dataset}: ${key} has the extension ${archiveFormatOf(basename(key))?.extension ?? `.${expected}`} but ${what}: a file whose contents don't match its extension`,
    {
      dataset,
      expected: wanted,
      found: found === undefined ? "unknown" : DESCRIPTIONS[found],
      hint,
    },
  );
}
