/**
 * Hardened zip extraction from a complete, already verified local file (SPEC §5).
 *
 * How: the central directory is read and validated first (zip-central.ts), every entry is
 * checked against the policy below and the declared total is compared with the size bound,
 * all BEFORE the first write; then the entries are extracted in file order with large
 * sequential reads, synchronous writes and a directory cache, each entry's local header,
 * size, CRC-32 and data descriptor checked against the central directory as it goes.
 *
 * Policy (each check names what it answers where it is made):
 * - Names: checkEntryPath + CollisionGuard (zip slip, absolute paths, drive letters,
 *   backslashes, control characters, depth and length bounds, duplicate/case/NFC
 *   collisions), plus "no entry below a file entry".
 * - Symbolic links are refused (UNSAFE_PATH), not supported even when relative: zip
 *   symlinks are rare in datasets, they are only marked in the host-specific external
 *   attributes (so tools disagree on what is a link), and link-then-write-through-it is the
 *   classic traversal (node-tar CVE-2021-32803 / CVE-2021-37701; Snyk "Zip Slip"). Devices,
 *   FIFOs and sockets are refused too (SPEC §5: never created).
 * - Encrypted entries (bit 0, strong encryption bit 6, masked central directory bit 13,
 *   AES method 99 / extra field 0x9901) and any method but stored (0) and deflate (8) are
 *   refused (ARCHIVE_INVALID).
 * - Bombs: the sum of the declared sizes of all files is compared with limits.maxBytes before
 *   anything is written (NO_SPACE), and every entry is stopped at its declared size while it
 *   inflates (a larger output is ARCHIVE_INVALID), so the bound holds even when sizes lie.
 *   Entries whose bytes overlap in the file (the "overlapping files" bomb, CVE-2019-13232,
 *   Python gh-109858) are refused. No plain ratio limit: legitimate data (zero-filled arrays,
 *   sparse tensors) reaches deflate's maximum of ~1032:1, and the byte bound is the real
 *   protection; a declared ratio above what deflate can produce at all is refused as a lie.
 *   Files and directories, those that paths imply included, are counted against maxEntries
 *   before anything is written (checkDirectories).
 * - Writes: files 0644 (0755 when the Unix mode has an x bit), directories 0755, subject to
 *   the process umask like open(2); setuid/setgid/sticky bits and ownership are never applied;
 *   files are created with O_EXCL ('wx'); file times are not restored.
 * - Network storage: small entries are written several at once once creating files one at a
 *   time turns out slow (archive/parallel-writes.ts, util/slow-creates.ts; as for tar). No
 *   entry depends on another (no links), so only their parent directories come first.
 * On failure the destination may hold part of the archive: the caller discards it (the
 * attempt directory), as for every failed dataset; no parallel write is still in flight then.
 */
import {
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  statfsSync,
  unlinkSync,
} from "node:fs";
import { pipeline } from "node:stream/promises";
import { crc32, createInflateRaw, inflateRawSync } from "node:zlib";
import { formatBytes } from "../config/size.ts";
import { DsfetchError } from "../errors.ts";
import { Crc32List } from "../util/packed-files.ts";
import { SlowCreates } from "../util/slow-creates.ts";
import { untilOrAborted } from "../util/until-or-aborted.ts";
import type { WriteMode } from "../util/write-mode.ts";
import { writeAllSync } from "../util/write-piece.ts";
import { storageError } from "../volumes/attempt.ts";
import { CollisionGuard, checkEntryPath, isRootName } from "./entry-path.ts";
import { type ExtractLimits, expandedLimitText } from "./limits.ts";
import { ParallelWrites } from "./parallel-writes.ts";
import {
  type CentralDirectory,
  type CentralEntry,
  EXTRA_AES,
  EXTRA_ZIP64,
  LOCAL_HEADER_SIZE,
  PROGRESS_EVERY,
  parseExtra,
  rawNameOf,
  readCentralDirectory,
  readFully,
  ZipErrors,
} from "./zip-central.ts";

export interface ExtractedFile {
  readonly path: string;
  readonly bytes: number;
}

export interface ExtractResult {
  /** Regular files written, in archive order. */
  readonly files: ExtractedFile[];
  /**
   * Each file's CRC-32, by index of `files`: the manifest's digests (SPEC §2). The central
   * directory's, which every file's bytes were checked against before it was listed: no
   * hashing of its own.
   */
  readonly crcs: Uint32Array;
  /** Bytes written (the sum of the files' sizes). */
  readonly bytes: number;
  /** Entries in the archive (files and directories). */
  readonly entries: number;
  /** Files written by the parallel writes (0: every file one at a time). */
  readonly writtenInParallel: number;
  /** What the user is told beside the result (names read as CP437: cp437Warning). */
  readonly warnings: readonly string[];
}

export interface ZipExtractOptions {
  /** How files are written (util/write-mode.ts); default "auto". */
  readonly writes?: WriteMode | undefined;
  /** "auto": what decides that creates are slow (default: util/slow-creates.ts's). For tests. */
  readonly creates?: SlowCreates | undefined;
  /** Stops the extraction between entries (its reason is thrown). */
  readonly signal?: AbortSignal | undefined;
  /**
   * Told whenever the extraction moves on: an entry done (or handed to the parallel writes),
   * a chunk of a large entry written, a parallel write done. The stall watchdog's clock
   * (zip-in-worker.ts).
   */
  readonly onProgress?: (() => void) | undefined;
}

const LOCAL_SIGNATURE = 0x04034b50;
const DESCRIPTOR_SIGNATURE = 0x08074b50;
const STORED = 0;
const DEFLATED = 8;
/** Entries up to this size (compressed and uncompressed) are inflated in one synchronous call. */
const SMALL_ENTRY = 1024 * 1024;
/** The read-ahead window over the archive, and the read size for large entries. */
const WINDOW = 8 * 1024 * 1024;
const LARGE_READ = 4 * 1024 * 1024;
/** Output chunk of the streaming inflater (MEASURED.md: 1 MiB chunks are ~3x the default). */
const INFLATE_CHUNK = 1024 * 1024;
/**
 * Deflate cannot expand more than ~1032:1 (a 258-byte match per 2 bits); with slack for block
 * headers, a declared size above this is a lie, refused before writing.
 */
const DEFLATE_MAX_RATIO = 1032;
const DEFLATE_SLACK = 64 * 1024;
/** Synchronous work between two yields to the event loop (other datasets keep downloading). */
const YIELD_MS = 20;

/** As the serial writer's "wx", and never through a link planted at the name. */
const FILE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFIFO = 0o010000;

/** An entry that passed every check before extraction (planEntries). */
export interface Planned {
  readonly entry: CentralEntry;
  readonly path: string;
  readonly directory: boolean;
  readonly mode: number;
  /** Where the next entry (or the central directory) starts: this entry must end by then. */
  limit: number;
}

const METHOD_NAMES: Readonly<Record<number, string>> = {
  1: "shrink",
  6: "implode",
  9: "deflate64",
  12: "bzip2",
  14: "lzma",
  93: "zstd",
  95: "xz",
  96: "jpeg",
  97: "wavpack",
  98: "ppmd",
};

/**
 * Extracts `zipPath` into `destination` (an existing empty directory). Throws DsfetchError:
 * UNSAFE_PATH (hostile names, links, special files), ARCHIVE_INVALID (corrupt, truncated,
 * ambiguous, encrypted, unsupported), NO_SPACE (over limits.maxBytes, or the disk is full),
 * STORAGE (other write errors).
 */
export async function extractZip(
  zipPath: string,
  destination: string,
  limits: ExtractLimits,
  dataset: string,
  options: ZipExtractOptions = {},
): Promise<ExtractResult> {
  const errors = new ZipErrors(dataset);
  let fd: number;
  try {
    fd = openSync(zipPath, "r");
  } catch (error) {
    throw readError(error, zipPath, dataset);
  }
  try {
    let existing: string[];
    try {
      existing = readdirSync(destination);
    } catch (error) {
      throw storageError(error, destination);
    }
    if (existing.length > 0) {
      throw new DsfetchError("INTERNAL", `zip extraction into ${destination}, which is not empty`, {
        dataset,
        hint: "this is a bug in dsfetch; please report it with the command you ran",
      });
    }
    const fileSize = fstatSync(fd).size;
    const { plan, rawNames } = planExtraction(
      fd,
      fileSize,
      limits,
      errors,
      options.onProgress ?? (() => {}),
    );
    checkPathLengths(plan, destination, errors);
    checkFreeSpace(plan, destination, dataset);
    return await new Extractor(fd, fileSize, rawNames, destination, limits, errors, options).run(
      plan,
    );
  } catch (error) {
    // Failed reads of the archive itself; anything else is a bug and stays as it is.
    if (error instanceof DsfetchError || !isSystemError(error)) throw error;
    throw readError(error, zipPath, dataset);
  } finally {
    closeSync(fd);
  }
}

/**
 * A zip declares what it expands to before a byte is written: more than the device has free is
 * said now, as the device being full (ENOSPC), with both sizes, instead of after writing
 * until the disk is full (on shared storage the dataset then falls back to an ephemeral
 * volume at once: stage-dataset.ts). Declared sizes are a lower bound of the space needed
 * (blocks, directories); a lie is caught while writing (each entry is held to its size).
 */
/** The longest path Linux takes in a call: PATH_MAX (4096) with its terminating NUL. */
const PATH_MAX_BYTES = 4095;

/**
 * Entries within maxPathBytes whose path under the destination is longer than Linux takes:
 * refused before anything is written, as the archive's doing. They failed mid-extraction with
 * ENAMETOOLONG, reported as STORAGE with a permissions hint (review, 2026-12-06; tar's
 * streaming extractor says the same when it meets one: tar-extract.ts throwFs).
 */
function checkPathLengths(plan: readonly Planned[], destination: string, errors: ZipErrors): void {
  const base = Buffer.byteLength(destination, "utf8") + 1;
  for (const item of plan) {
    const length = base + Buffer.byteLength(item.path, "utf8");
    if (length <= PATH_MAX_BYTES) continue;
    throw errors.entry(
      "ARCHIVE_INVALID",
      item.path,
      `has a path too long for the filesystem once under the dataset's directory (${length} bytes with ${destination}/; Linux takes at most ${PATH_MAX_BYTES})`,
      "nothing was published: shorten the archive's paths (Linux takes at most 4096 bytes for a whole path, and 255 for one name)",
    );
  }
}

function checkFreeSpace(plan: readonly Planned[], destination: string, dataset: string): void {
  let declared = 0;
  for (const item of plan) if (!item.directory) declared += item.entry.uncompressedSize;
  let free: number;
  try {
    const fs = statfsSync(destination);
    free = fs.bavail * fs.bsize;
  } catch {
    return; // Cannot tell: the writes will.
  }
  if (declared <= free) return;
  throw new DsfetchError(
    "NO_SPACE",
    `${dataset}: the zip archive's entries declare ${formatBytes(declared)} (${declared} bytes) but the device holding ${destination} has ${formatBytes(free)} free`,
    {
      dataset,
      hint: "free space on that disk (on shared storage: dsfetch prune), or give the dataset a larger volume",
      cause: Object.assign(
        new Error("ENOSPC: no space left on device (the entries' declared sizes)"),
        {
          code: "ENOSPC",
        },
      ),
    },
  );
}

function isSystemError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && /^E[A-Z]+$/.test(code);
}

function readError(error: unknown, zipPath: string, dataset: string): DsfetchError {
  return new DsfetchError(
    "STORAGE",
    `dataset "${dataset}": cannot read the downloaded archive ${zipPath}: ${(error as Error).message ?? String(error)}`,
    {
      dataset,
      hint: "check the disk holding the attempt directory, then run dsfetch again",
      cause: error,
    },
  );
}

/** Everything decided from the central directory alone, before any write. */
function planExtraction(
  fd: number,
  fileSize: number,
  limits: ExtractLimits,
  errors: ZipErrors,
  onProgress: () => void,
): { plan: Planned[]; rawNames: Buffer } {
  const directory = readCentralDirectory(
    fd,
    fileSize,
    limits.maxEntries,
    errors,
    onProgress,
    limits.maxNameCharacters,
  );
  return { plan: planEntries(directory, limits, errors, onProgress), rawNames: directory.rawNames };
}

/**
 * Every check of the entries that needs no byte of their data: names, types, methods,
 * declared sizes, collisions, directories, layout, the size bound; the entries in file order.
 * Also `plan`'s (plan/zip-declared.ts), so that it refuses what fetch refuses (exploratory
 * tester, 2026-12-07: plan passed `../evil.txt` and `dir\b.txt`).
 */
export function planEntries(
  directory: CentralDirectory,
  limits: ExtractLimits,
  errors: ZipErrors,
  onProgress: () => void = () => {},
): Planned[] {
  // Planning a million entries takes ~10 s here: progress every few thousand, for the stall
  // watchdog (zip-in-worker.ts).
  let checked = 0;
  const tick = () => {
    if (++checked % PROGRESS_EVERY === 0) onProgress();
  };
  const guard = new CollisionGuard();
  const planned: Planned[] = [];
  for (const entry of directory.entries) {
    tick();
    // The archive's root as a directory entry ("./": bsdtar -cf x.zip -C dir .): the
    // destination itself, skipped as the tar extractor skips it (it was refused as naming the
    // dataset root: fidelity tester, 2026-12-07). One with content is refused below.
    if (isRootName(entry.name) && entry.name.endsWith("/") && entry.uncompressedSize === 0) {
      continue;
    }
    const item = checkEntry(entry, limits, errors);
    // Duplicates and case/NFC collisions (node-tar GHSA-qq89-hq3f-393p; CVE-2013-4787: two
    // entries with one name, each tool extracting a different one).
    const earlier = guard.check(item.path, item.directory);
    if (earlier !== undefined) {
      throw errors.entry(
        "UNSAFE_PATH",
        entry.name,
        earlier === item.path
          ? "appears twice in the archive"
          : `is the same file as entry ${JSON.stringify(earlier)} on case-insensitive or Unicode-normalising filesystems`,
        "rename one of them and rebuild the archive",
      );
    }
    planned.push(item);
  }
  checkDirectories(planned, guard, limits, errors, tick);

  // Layout: in file order, each entry's smallest possible extent (header + name + data) must
  // end before the next entry starts, and the last before the central directory. Overlapping
  // entries are the non-recursive zip bomb (CVE-2019-13232; https://www.bamsoftware.com/hacks/zipbomb/)
  // and a parser differential. The exact extent (with the local extra field and the data
  // descriptor) is checked again when each local header is read.
  const ordered = [...planned].sort(
    (a, b) => a.entry.localHeaderOffset - b.entry.localHeaderOffset,
  );
  for (let i = 0; i < ordered.length; i++) {
    tick();
    const item = ordered[i] as Planned;
    const next = ordered[i + 1];
    item.limit = next === undefined ? directory.offset : next.entry.localHeaderOffset;
    const minimalEnd =
      item.entry.localHeaderOffset +
      LOCAL_HEADER_SIZE +
      item.entry.rawNameLength +
      item.entry.compressedSize;
    if (minimalEnd > item.limit) {
      throw errors.corruptEntry(
        item.entry.name,
        next === undefined
          ? "runs into the central directory (its offset or size is out of range)"
          : `overlaps entry ${JSON.stringify(next.entry.name)} in the file (an overlapping-entries zip bomb or a corrupt archive)`,
      );
    }
  }

  // Size bound (SPEC §5), decided before writing: the sum of the declared sizes. Each entry is
  // held to its declared size while it inflates, so lies cannot get past this.
  let total = 0;
  let crossing: Planned | undefined;
  for (const item of ordered) {
    if (item.directory) continue;
    total += item.entry.uncompressedSize;
    if (crossing === undefined && total > limits.maxBytes) crossing = item;
  }
  if (crossing !== undefined) {
    const { limit, hint } = expandedLimitText(limits);
    throw errors.entry(
      "NO_SPACE",
      crossing.entry.name,
      `takes the archive's expanded size past ${limit} (the whole archive declares ${total} bytes)`,
      hint,
    );
  }
  return ordered;
}

/**
 * Every directory the extraction will create, explicit or implied by a path, counted with the
 * files against maxEntries and checked against the files, all before the first write.
 *
 * Counted: implied parents cost inodes and directory blocks like entries, and were bounded by
 * nothing: 100,000 empty files named `<i>/a/a/.../a/f` (62 levels) made 6.3 million directories
 * from a 34 MB zip (review, 2026-12-06). Counted by exact path, as ensureDir creates them ("A"
 * and "a" are two directories on Linux).
 *
 * Checked once per distinct directory: a file entry that is also another entry's directory
 * ("a" and "a/b": whichever comes first wins with other tools, and the second would write
 * through the first). Checking every prefix of every path again (slice, fold, hash) cost the
 * depth times the length per entry, ~4x10^9 characters within the bound on names (review,
 * 2026-12-06); an entry whose parent is known now costs one lookup, and each new directory one
 * check.
 */
function checkDirectories(
  planned: readonly Planned[],
  guard: CollisionGuard,
  limits: ExtractLimits,
  errors: ZipErrors,
  tick: () => void,
): void {
  const directories = new Set<string>();
  let files = 0;
  for (const item of planned) if (!item.directory) files++;
  for (const item of planned) {
    tick();
    const path = item.path;
    // The deepest directory this entry needs: itself, or its parent.
    const deepest = item.directory ? path.length : path.lastIndexOf("/");
    if (deepest <= 0 || directories.has(path.slice(0, deepest))) continue;
    // Directories are added with all their parents: walk up to the first one known, then add
    // the new ones from the top.
    let known = deepest;
    do known = path.lastIndexOf("/", known - 1);
    while (known > 0 && !directories.has(path.slice(0, known)));
    for (let end = path.indexOf("/", known + 1); ; end = path.indexOf("/", end + 1)) {
      const directory = path.slice(0, end === -1 ? deepest : end);
      if (guard.isFile(directory)) {
        throw errors.entry(
          "UNSAFE_PATH",
          item.entry.name,
          `would be written inside ${JSON.stringify(directory)}, which is a file in the same archive`,
          "rename the file or the directory and rebuild the archive",
        );
      }
      directories.add(directory);
      if (files + directories.size > limits.maxEntries) {
        throw errors.archive(
          "ARCHIVE_INVALID",
          `would create more than the limit of ${limits.maxEntries} entries: ${files} files and at least ${directories.size} directories, counting the directories its paths imply`,
          "split the dataset into several archives, pack small files together (for example into shards), or flatten deep directory trees",
        );
      }
      if (directory.length === deepest) break;
    }
  }
}

/** The per-entry policy that needs nothing but the central directory record. */
function checkEntry(entry: CentralEntry, limits: ExtractLimits, errors: ZipErrors): Planned {
  const name = entry.name;
  // Encryption: dsfetch has no keys, and a password-protected dataset should be protected by
  // bucket access control instead. Bits 0 (traditional), 6 (strong), 13 (masked CD); method 99
  // and extra field 0x9901 (WinZip AES).
  if ((entry.flags & 0x2041) !== 0 || entry.method === 99 || entry.aes) {
    throw errors.entry(
      "ARCHIVE_INVALID",
      name,
      "is encrypted, and dsfetch cannot decrypt zip archives",
      "upload an archive without a password and protect the bucket with access control or server-side encryption instead",
    );
  }
  if (entry.method !== STORED && entry.method !== DEFLATED) {
    const known = METHOD_NAMES[entry.method];
    throw errors.entry(
      "ARCHIVE_INVALID",
      name,
      `uses compression method ${entry.method}${known === undefined ? "" : ` (${known})`}, which dsfetch does not support`,
      "rebuild the archive with deflate or no compression (zip -Z deflate, or zip -0), or use a .tar.gz/.tar.xz archive",
    );
  }
  // The Unix mode in the high 16 bits of the external attributes, whatever the "made by" host
  // says: a reader that honours it regardless must not see a link we would write as a file.
  const unixMode = entry.externalAttributes >>> 16;
  // A FIFO's mode on an entry is the mode of the pipe its data was read from: Info-ZIP's
  // `cmd | zip out.zip -` records stdin's. Its data is written as a regular file, as unzip,
  // 7-Zip and Python do; no FIFO is ever created (it was refused, "remove it from the
  // archive", which a user streaming into zip cannot do: fidelity tester, 2026-12-07).
  const type = (unixMode & S_IFMT) === S_IFIFO ? S_IFREG : unixMode & S_IFMT;
  if (type === S_IFLNK) {
    // Links are the classic traversal vector: a link to "/etc" or "../", then a file written
    // through it (node-tar CVE-2021-32803, CVE-2021-37701; Snyk Zip Slip, 2018).
    throw errors.entry(
      "UNSAFE_PATH",
      name,
      "is a symbolic link, and dsfetch does not extract links from zip archives (they can point outside the dataset)",
      "replace the link with the file or directory it points to and rebuild the archive (zip without -y)",
    );
  }
  if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) {
    throw errors.entry(
      "UNSAFE_PATH",
      name,
      `is a ${specialKind(type)}, which dsfetch never creates`,
      "remove it from the archive (a dataset holds regular files and directories only)",
    );
  }
  const directory = name.endsWith("/") || type === S_IFDIR;
  // Zip slip, absolute paths, drive letters, backslashes, control characters, depth, length
  // (Snyk "Zip Slip", https://github.com/snyk/zip-slip-vulnerability; CWE-22).
  const checked = checkEntryPath(name, limits);
  if (!checked.ok) {
    // A name read as CP437 whose bytes were another code page's: CP932 (Japanese Windows) has
    // 0x5C, CP437's backslash, as the second byte of many characters (表, ソ, 能): said as the
    // encoding it is, not as a path trick (exploratory tester, 2026-12-07).
    throw entry.cp437 === true
      ? errors.entry(
          "UNSAFE_PATH",
          name,
          `is refused: ${checked.reason}; the name is not marked UTF-8 and was read as CP437, the zip standard's encoding for such names: if the archive was made on a Windows with another code page (CP932 in Japan), that byte is part of a character`,
          "re-create the archive with UTF-8 names (7-Zip: -mcu=on; Info-ZIP's zip on Linux)",
        )
      : errors.entry(
          "UNSAFE_PATH",
          name,
          `is refused: ${checked.reason}`,
          "rebuild the archive with relative names inside the archive root (zip -r archive.zip . from the dataset directory)",
        );
  }
  if (directory && entry.uncompressedSize !== 0) {
    throw errors.corruptEntry(
      name,
      `is a directory that declares ${entry.uncompressedSize} bytes of content`,
    );
  }
  if (entry.method === STORED && entry.compressedSize !== entry.uncompressedSize) {
    throw errors.corruptEntry(
      name,
      `is stored uncompressed but declares ${entry.compressedSize} stored and ${entry.uncompressedSize} extracted bytes`,
    );
  }
  if (
    entry.method === DEFLATED &&
    entry.uncompressedSize > entry.compressedSize * DEFLATE_MAX_RATIO + DEFLATE_SLACK
  ) {
    throw errors.corruptEntry(
      name,
      `declares ${entry.uncompressedSize} bytes from ${entry.compressedSize} compressed bytes, more than deflate can produce (a size lie, as in zip bombs)`,
    );
  }
  const executable = (unixMode & 0o111) !== 0 && !directory;
  return {
    entry,
    // The decoded name when it is the path already (most are): one string per entry, not two.
    path: checked.path === name ? name : checked.path,
    directory,
    // Files read-only as published (the creating descriptor still writes): no chmod later.
    mode: directory ? 0o755 : executable ? 0o555 : 0o444,
    limit: 0,
  };
}

/**
 * Names without the UTF-8 flag read as CP437, the zip standard's encoding for them: right for
 * a zip made on MS-DOS or an English Windows, wrong for one made where Windows writes another
 * code page (Japanese: CP932; Cyrillic: CP866), whose names come out as other characters.
 * Which it was cannot be told from the bytes, so the files keep their CP437 names and the
 * user is told (fidelity tester, 2026-12-07: a CP932 zip was published as âeâXâg.txt, silently).
 */
export function cp437Warning(plan: readonly Planned[]): string | undefined {
  const read = plan.filter((item) => item.entry.cp437 === true);
  const first = read[0];
  if (first === undefined) return undefined;
  return `${read.length === 1 ? "1 name" : `${read.length} names`} in the zip archive (${JSON.stringify(first.entry.name)}${read.length > 1 ? ", …" : ""}) ${read.length === 1 ? "was" : "were"} not marked UTF-8 and ${read.length === 1 ? "was" : "were"} read as CP437, the zip standard's encoding for them; if the archive was made on a Windows whose code page is another (CP932 in Japan, CP866 for Cyrillic), those files have other names than intended: re-create the archive with UTF-8 names (7-Zip: -mcu=on; Info-ZIP's zip on Linux)`;
}

function specialKind(type: number): string {
  switch (type) {
    case 0o010000:
      return "FIFO (named pipe)";
    case 0o020000:
      return "character device";
    case 0o060000:
      return "block device";
    case 0o140000:
      return "socket";
    default:
      return `special file (type 0o${type.toString(8)})`;
  }
}

/** A forward-moving read window over the archive: one large read serves many small entries. */
class Window {
  private readonly buffer = Buffer.allocUnsafe(WINDOW);
  private start = 0;
  private end = 0;
  private readonly fd: number;
  private readonly fileSize: number;
  private readonly errors: ZipErrors;

  constructor(fd: number, fileSize: number, errors: ZipErrors) {
    this.fd = fd;
    this.fileSize = fileSize;
    this.errors = errors;
  }

  /** Bytes [position, position+length), valid until the next call. length <= WINDOW. */
  view(position: number, length: number): Buffer {
    if (position < this.start || position + length > this.end) {
      if (position + length > this.fileSize) {
        throw this.errors.corrupt("ends before its declared end (truncated file)");
      }
      const want = Math.min(WINDOW, this.fileSize - position);
      readFully(this.fd, this.buffer, 0, want, position, this.errors);
      this.start = position;
      this.end = position + want;
    }
    const from = position - this.start;
    return this.buffer.subarray(from, from + length);
  }
}

interface LocalInfo {
  readonly dataStart: number;
  /** Whether the local header carries a Zip64 field (then a data descriptor has 8-byte sizes). */
  readonly zip64: boolean;
}

class Extractor {
  private readonly window: Window;
  private readonly createdDirs = new Set<string>();
  private lastYield = performance.now();
  private written = 0;
  private readonly fd: number;
  private readonly fileSize: number;
  /** Every entry's name as stored (zip-central.ts rawNameOf). */
  private readonly rawNames: Buffer;
  private readonly destination: string;
  private readonly limits: ExtractLimits;
  private readonly errors: ZipErrors;
  private readonly writes: WriteMode;
  /** "auto": the timing of creates and closes (util/slow-creates.ts). */
  private readonly creates: SlowCreates;
  private readonly signal: AbortSignal | undefined;
  private readonly onProgress: () => void;
  /** Set in "parallel" mode, or once "auto" measured slow creates. */
  private parallel: ParallelWrites | undefined;
  private writtenInParallel = 0;

  constructor(
    fd: number,
    fileSize: number,
    rawNames: Buffer,
    destination: string,
    limits: ExtractLimits,
    errors: ZipErrors,
    options: ZipExtractOptions,
  ) {
    this.fd = fd;
    this.fileSize = fileSize;
    this.rawNames = rawNames;
    this.destination = destination;
    this.limits = limits;
    this.errors = errors;
    this.window = new Window(fd, fileSize, errors);
    this.writes = options.writes ?? "auto";
    this.creates = options.creates ?? new SlowCreates();
    this.signal = options.signal;
    this.onProgress = options.onProgress ?? (() => {});
    if (this.writes === "parallel") this.startParallel();
  }

  async run(plan: Planned[]): Promise<ExtractResult> {
    try {
      this.signal?.throwIfAborted();
      const { files, crcs } = await this.extractAll(plan);
      if (this.parallel !== undefined) {
        await untilOrAborted(this.parallel.idle(), this.signal);
        this.throwParallelFailure();
      }
      // An interrupt that came during the last entry is the answer: nothing is published.
      this.signal?.throwIfAborted();
      const warning = cp437Warning(plan);
      return {
        files,
        crcs: crcs.packed(),
        bytes: this.written,
        entries: plan.length,
        writtenInParallel: this.writtenInParallel,
        warnings: warning === undefined ? [] : [warning],
      };
    } catch (error) {
      // A parallel write that failed first is the answer (a later error may be its
      // consequence); and no file may still be on its way when the caller removes the tree.
      const failure = this.parallelError();
      await this.parallel?.settle();
      throw failure ?? error;
    }
  }

  private async extractAll(plan: Planned[]): Promise<{ files: ExtractedFile[]; crcs: Crc32List }> {
    const files: ExtractedFile[] = [];
    const crcs = new Crc32List();
    for (const item of plan) {
      const local = this.readLocalHeader(item);
      const entry = item.entry;
      let dataEnd = local.dataStart + entry.compressedSize;
      if (dataEnd > item.limit) {
        throw this.errors.corruptEntry(
          entry.name,
          "overlaps the next entry or the central directory once its local header is read (an overlapping-entries zip bomb or a corrupt archive)",
        );
      }
      const small = entry.compressedSize <= SMALL_ENTRY && entry.uncompressedSize <= SMALL_ENTRY;
      if (item.directory) {
        // Its data, if any (a deflated empty stream), must still be exactly nothing.
        if (entry.compressedSize > 0) this.checkEmpty(item, local.dataStart);
        this.ensureDir(item.path);
      } else if (small) {
        this.extractSmall(item, local.dataStart);
        files.push({ path: item.path, bytes: entry.uncompressedSize });
        crcs.push(entry.crc32);
      } else {
        await this.extractLarge(item, local.dataStart);
        files.push({ path: item.path, bytes: entry.uncompressedSize });
        crcs.push(entry.crc32);
      }
      if ((entry.flags & 0x0008) !== 0) dataEnd += this.checkDescriptor(item, dataEnd, local.zip64);
      if (dataEnd > item.limit) {
        throw this.errors.corruptEntry(
          entry.name,
          "has a data descriptor that overlaps the next entry or the central directory",
        );
      }
      this.onProgress();
      if (this.parallel !== undefined) {
        this.throwParallelFailure();
        const full = this.parallel.backpressure();
        if (full !== undefined) await untilOrAborted(full, this.signal);
        // This runs on the main thread: the writes' completions (each file's next request)
        // are handled only when it yields, so it yields after every entry while they run.
        await this.yieldNow();
      } else if (performance.now() - this.lastYield > YIELD_MS) {
        await this.yieldNow();
      }
    }
    return { files, crcs };
  }

  private async yieldNow(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.lastYield = performance.now();
    this.signal?.throwIfAborted();
  }

  private startParallel(): void {
    this.parallel = new ParallelWrites(FILE_FLAGS, this.onProgress);
  }

  /** The first parallel write's failure as the serial writer would have thrown it, if any. */
  private parallelError(): DsfetchError | undefined {
    const failure = this.parallel?.failure;
    return failure === undefined ? undefined : storageError(failure.error, failure.file.path);
  }

  private throwParallelFailure(): void {
    const error = this.parallelError();
    if (error !== undefined) throw error;
  }

  /**
   * The local header must agree with the central directory: same name bytes, method,
   * encryption/descriptor/UTF-8 flags, and (unless deferred to a data descriptor) CRC and
   * sizes. A zip whose two copies disagree is read differently by streaming and central-
   * directory readers (CVE-2013-4787, CVE-2017-13156).
   */
  private readLocalHeader(item: Planned): LocalInfo {
    const entry = item.entry;
    const offset = entry.localHeaderOffset;
    const fixed = this.window.view(offset, LOCAL_HEADER_SIZE);
    if (fixed.readUInt32LE(0) !== LOCAL_SIGNATURE) {
      throw this.errors.corruptEntry(
        entry.name,
        `has no local file header at offset ${offset} (the central directory points at the wrong place)`,
      );
    }
    const flags = fixed.readUInt16LE(6);
    const method = fixed.readUInt16LE(8);
    const crc = fixed.readUInt32LE(14);
    const compressed32 = fixed.readUInt32LE(18);
    const uncompressed32 = fixed.readUInt32LE(22);
    const nameLength = fixed.readUInt16LE(26);
    const extraLength = fixed.readUInt16LE(28);
    const headerEnd = offset + LOCAL_HEADER_SIZE + nameLength + extraLength;
    if (headerEnd > item.limit) {
      throw this.errors.corruptEntry(
        entry.name,
        "has a local header that overlaps the next entry or the central directory",
      );
    }
    const header = this.window.view(offset, LOCAL_HEADER_SIZE + nameLength + extraLength);
    const name = header.subarray(LOCAL_HEADER_SIZE, LOCAL_HEADER_SIZE + nameLength);
    if (!name.equals(rawNameOf(this.rawNames, entry))) {
      throw this.errors.corruptEntry(
        entry.name,
        `has a different name in its local header (${JSON.stringify(name.toString("utf8").slice(0, 200))}) than in the central directory`,
      );
    }
    if (method !== entry.method) {
      throw this.errors.corruptEntry(
        entry.name,
        `has compression method ${method} in its local header but ${entry.method} in the central directory`,
      );
    }
    if ((flags & 0x2849) !== (entry.flags & 0x2849)) {
      throw this.errors.corruptEntry(
        entry.name,
        "has different flags (encryption, data descriptor or UTF-8) in its local header and the central directory",
      );
    }
    const extra = parseExtra(header.subarray(LOCAL_HEADER_SIZE + nameLength));
    if (!(extra instanceof Map)) {
      throw this.errors.corruptEntry(
        entry.name,
        `has two local extra fields of type 0x${extra.duplicate.toString(16)}, which tools resolve differently`,
      );
    }
    if (extra.has(EXTRA_AES)) {
      throw this.errors.entry(
        "ARCHIVE_INVALID",
        entry.name,
        "is encrypted (AES field in its local header), and dsfetch cannot decrypt zip archives",
        "upload an archive without a password",
      );
    }
    const zip64 = extra.get(EXTRA_ZIP64);
    let compressed = compressed32;
    let uncompressed = uncompressed32;
    if (compressed32 === 0xffffffff || uncompressed32 === 0xffffffff) {
      // In a local header the Zip64 field holds both sizes (APPNOTE 4.5.3).
      if (zip64 === undefined || zip64.length < 16) {
        throw this.errors.corruptEntry(
          entry.name,
          "has Zip64 markers in its local header but no Zip64 sizes",
        );
      }
      uncompressed = toNumber(zip64.readBigUInt64LE(0));
      compressed = toNumber(zip64.readBigUInt64LE(8));
    }
    const deferred = (flags & 0x0008) !== 0;
    // With a data descriptor the local fields are zero (or already right: Info-ZIP fills in
    // what it knows); without one they must match exactly.
    const matches = (local: number, central: number) =>
      local === central || (deferred && local === 0);
    if (
      !matches(crc, entry.crc32) ||
      !matches(compressed, entry.compressedSize) ||
      !matches(uncompressed, entry.uncompressedSize)
    ) {
      throw this.errors.corruptEntry(
        entry.name,
        "has a CRC or sizes in its local header that disagree with the central directory",
      );
    }
    return { dataStart: headerEnd, zip64: zip64 !== undefined };
  }

  /**
   * A data descriptor follows the data (general purpose bit 3): optional signature, CRC, then
   * 4- or 8-byte sizes. It must repeat the central directory's values. Returns its length.
   */
  private checkDescriptor(item: Planned, position: number, zip64: boolean): number {
    const entry = item.entry;
    const available = Math.min(24, this.fileSize - position);
    const bytes = Buffer.from(this.window.view(position, available));
    const forms: Array<{ signature: boolean; wide: boolean }> = zip64
      ? [
          { signature: true, wide: true },
          { signature: false, wide: true },
          { signature: true, wide: false },
          { signature: false, wide: false },
        ]
      : [
          { signature: true, wide: false },
          { signature: false, wide: false },
          { signature: true, wide: true },
          { signature: false, wide: true },
        ];
    for (const form of forms) {
      const length = (form.signature ? 4 : 0) + 4 + (form.wide ? 16 : 8);
      if (length > available) continue;
      let at = 0;
      if (form.signature) {
        if (bytes.readUInt32LE(0) !== DESCRIPTOR_SIGNATURE) continue;
        at = 4;
      }
      const crc = bytes.readUInt32LE(at);
      const compressed = form.wide
        ? toNumber(bytes.readBigUInt64LE(at + 4))
        : bytes.readUInt32LE(at + 4);
      const uncompressed = form.wide
        ? toNumber(bytes.readBigUInt64LE(at + 12))
        : bytes.readUInt32LE(at + 8);
      if (
        crc === entry.crc32 &&
        compressed === entry.compressedSize &&
        uncompressed === entry.uncompressedSize
      ) {
        return length;
      }
    }
    throw this.errors.corruptEntry(
      entry.name,
      "has a data descriptor that is missing or disagrees with the central directory",
    );
  }

  private checkEmpty(item: Planned, dataStart: number): void {
    const entry = item.entry;
    if (entry.compressedSize > SMALL_ENTRY) {
      throw this.errors.corruptEntry(entry.name, "is a directory with compressed content");
    }
    this.decode(item, this.window.view(dataStart, entry.compressedSize));
  }

  /**
   * Inflates or copies a small entry in memory, verifies it, then writes it in one go: here,
   * or handed to the parallel writes once creates turned out slow.
   */
  private extractSmall(item: Planned, dataStart: number): void {
    const entry = item.entry;
    const data = this.decode(item, this.window.view(dataStart, entry.compressedSize));
    this.account(item, data.length);
    this.ensureParent(item);
    const full = `${this.destination}/${item.path}`;
    if (this.parallel !== undefined) {
      this.writtenInParallel++;
      // A stored entry's bytes are a view of the read window, which the next read reuses.
      const owned = entry.method === STORED ? Buffer.from(data) : data;
      this.parallel.add({ path: full, name: entry.name, mode: item.mode, data: owned });
      return;
    }
    const timed = this.writes === "auto";
    if (timed) this.creates.begin();
    const out = this.create(full, item.mode);
    if (timed) this.creates.end();
    try {
      writeAllSync(out, data);
    } catch (error) {
      this.closeQuietly(out);
      throw storageError(error, full);
    }
    if (timed) this.creates.begin();
    this.closeFile(out, full);
    if (timed) {
      this.creates.end();
      if (this.creates.fileDone()) this.startParallel();
    }
  }

  /** A failed close is a failed write (NFS reports write errors there: EIO, EDQUOT). */
  private closeFile(fd: number, full: string): void {
    try {
      closeSync(fd);
    } catch (error) {
      throw storageError(error, full);
    }
  }

  /** After another error, which is the one to report. */
  private closeQuietly(fd: number): void {
    try {
      closeSync(fd);
    } catch {
      // The write's error is the answer.
    }
  }

  /** Decompresses one in-memory entry, bounded by its declared size, and checks size and CRC. */
  private decode(item: Planned, compressed: Buffer): Buffer {
    const entry = item.entry;
    let data: Buffer;
    if (entry.method === STORED) {
      data = compressed;
    } else {
      let result: { buffer: Buffer; engine: { bytesWritten: number } };
      try {
        // maxOutputLength stops inflation at the declared size (a lying size cannot allocate or
        // write more than it declared); 1 byte over is enough to see the lie.
        result = inflateRawSync(compressed, {
          maxOutputLength: Math.max(1, entry.uncompressedSize),
          // One output chunk of the declared size (+1 to see a lie without a second one):
          // the default 16 KiB chunk would stay allocated behind each tiny file while it
          // waits for a parallel write (found in review: 26,000 queued tiny files held
          // +419 MiB, where the queue's bound counts their sizes).
          chunkSize: Math.max(64, entry.uncompressedSize + 1),
          info: true,
        }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
      } catch (error) {
        throw this.inflateError(item, error);
      }
      data = result.buffer;
      if (result.engine.bytesWritten !== entry.compressedSize) {
        throw this.errors.corruptEntry(
          entry.name,
          `has ${entry.compressedSize - result.engine.bytesWritten} bytes after the end of its compressed data`,
        );
      }
    }
    if (data.length !== entry.uncompressedSize) {
      throw this.sizeError(item, data.length);
    }
    if (crc32(data) !== entry.crc32) throw this.crcError(item);
    return data;
  }

  /** Streams a large entry: big reads, inflate in the thread pool, synchronous writes. */
  private async extractLarge(item: Planned, dataStart: number): Promise<void> {
    const entry = item.entry;
    this.ensureParent(item);
    const full = `${this.destination}/${item.path}`;
    const out = this.create(full, item.mode);
    let produced = 0;
    let crc = 0;
    const sink = (chunk: Buffer) => {
      // An interrupt, or a failed parallel write, ends a large entry at its next chunk.
      this.signal?.throwIfAborted();
      this.throwParallelFailure();
      // Stop at the declared size: nothing past it is written (the declared-size lie).
      if (produced + chunk.length > entry.uncompressedSize) {
        throw this.sizeError(item, produced + chunk.length, true);
      }
      this.account(item, chunk.length);
      try {
        writeAllSync(out, chunk);
      } catch (error) {
        throw storageError(error, full);
      }
      crc = crc32(chunk, crc);
      produced += chunk.length;
      this.onProgress();
    };
    const fd = this.fd;
    const errors = this.errors;
    function* source(): Generator<Buffer> {
      for (let position = dataStart, left = entry.compressedSize; left > 0; ) {
        const length = Math.min(left, LARGE_READ);
        const chunk = Buffer.allocUnsafe(length);
        readFully(fd, chunk, 0, length, position, errors);
        position += length;
        left -= length;
        yield chunk;
      }
    }
    let ok = false;
    try {
      if (entry.method === STORED) {
        for (const chunk of source()) {
          sink(chunk);
          // Every 4 MiB: other datasets, parallel writes' completions and the signal go on.
          await this.yieldNow();
        }
      } else {
        const inflater = createInflateRaw({ chunkSize: INFLATE_CHUNK });
        try {
          await pipeline(source, inflater, async (chunks: AsyncIterable<Buffer>) => {
            for await (const chunk of chunks) sink(chunk);
          });
        } catch (error) {
          if (error instanceof DsfetchError) throw error;
          if (this.signal?.aborted === true) throw this.signal.reason;
          throw this.inflateError(item, error);
        }
        if (inflater.bytesWritten !== entry.compressedSize) {
          throw errors.corruptEntry(
            entry.name,
            `has ${entry.compressedSize - inflater.bytesWritten} bytes after the end of its compressed data`,
          );
        }
      }
      if (produced !== entry.uncompressedSize) throw this.sizeError(item, produced);
      if (crc !== entry.crc32) throw this.crcError(item);
      ok = true;
    } finally {
      if (ok) this.closeFile(out, full);
      else this.closeQuietly(out);
      // A file that failed verification is not left behind looking complete.
      if (!ok) {
        try {
          unlinkSync(full);
        } catch {
          // The caller discards the whole destination anyway.
        }
      }
    }
  }

  /** Total bytes written, checked again as they are written (defence in depth for maxBytes). */
  private account(item: Planned, bytes: number): void {
    this.written += bytes;
    if (this.written > this.limits.maxBytes) {
      const { limit, hint } = expandedLimitText(this.limits);
      throw this.errors.entry(
        "NO_SPACE",
        item.entry.name,
        `takes the archive's expanded size past ${limit}`,
        hint,
      );
    }
  }

  private create(full: string, mode: number): number {
    try {
      // O_CREAT|O_EXCL: never opens an existing file or follows a link planted at this name.
      return openSync(full, "wx", mode);
    } catch (error) {
      throw storageError(error, full);
    }
  }

  private ensureParent(item: Planned): void {
    const slash = item.path.lastIndexOf("/");
    if (slash > 0) this.ensureDir(item.path.slice(0, slash));
  }

  /** Creates a directory and its missing parents, remembering what exists (we made all of it). */
  private ensureDir(path: string): void {
    if (this.createdDirs.has(path)) return;
    const slash = path.lastIndexOf("/");
    if (slash > 0) this.ensureDir(path.slice(0, slash));
    const full = `${this.destination}/${path}`;
    try {
      mkdirSync(full, 0o755);
    } catch (error) {
      throw storageError(error, full);
    }
    this.createdDirs.add(path);
  }

  private inflateError(item: Planned, error: unknown): DsfetchError {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ERR_BUFFER_TOO_LARGE")
      return this.sizeError(item, item.entry.uncompressedSize + 1, true);
    const what =
      code === "Z_BUF_ERROR"
        ? "ends before its compressed data does (truncated)"
        : `has corrupt compressed data (${(error as Error).message})`;
    return this.errors.corruptEntry(item.entry.name, what);
  }

  private sizeError(item: Planned, actual: number, atLeast = false): DsfetchError {
    const declared = item.entry.uncompressedSize;
    return this.errors.corruptEntry(
      item.entry.name,
      actual > declared
        ? `expands to more than the ${declared} bytes it declares${atLeast ? " (stopped there)" : ` (${actual} bytes)`}: a size lie, as in zip bombs`
        : `expands to ${actual} bytes, not the ${declared} bytes it declares`,
    );
  }

  private crcError(item: Planned): DsfetchError {
    return this.errors.corruptEntry(
      item.entry.name,
      "fails its CRC-32 check (the data is corrupt)",
    );
  }
}

function toNumber(value: bigint): number {
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}
