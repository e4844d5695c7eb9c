/**
 * `list --verify`: every file of a published dataset read again and its digest compared with
 * the one its manifest recorded when it was verified against the store (an object's MD5 or
 * checksum, an archive's files' CRC-32s).
 *
 * Why: `list --check` compares names, sizes, kinds and times with the seal (tree-seal.ts),
 * which misses bytes changed in place with the size and times kept (a job's `dd conv=notrunc`
 * then `touch -r`, a storage fault, bit rot on a volume without checksums). A platform team
 * asking "is the team's copy still what was downloaded?" had no way to know short of a new
 * download (session 46's note: same-size rewrites are only warned about, by their times).
 */

import { createHash } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import { isAbsolute, join, normalize, sep } from "node:path";
import { multipartEtag } from "../fetch/etag.ts";
import { createDigest, type DigestAlgorithm } from "../fetch/verification.ts";
import { mapLimit } from "../util/map-limit.ts";
import { manifestFiles } from "./manifest-files.ts";
import type { StorageCall } from "./storage-call.ts";

/** Field names are `list --json`'s `content`: keep them stable. */
export interface ContentCheck {
  /** Files whose digest was computed again (matching or not). */
  readonly checked: number;
  /** Files without a recorded digest (a multipart ETag without its parts' sizes). */
  readonly unchecked: number;
  /** Files whose bytes are not what was published (or that are missing, or not files). */
  readonly mismatched: number;
  /** The first few mismatches, each "<path>: <what>". */
  readonly examples: readonly string[];
  /** Bytes read. */
  readonly bytesRead: number;
}

/** Mismatches said by name, at most. */
const EXAMPLES = 10;
/** Bytes read at a time. */
const READ_BYTES = 1 << 20;
/** Files read at once: reads of small files overlap; hashing is on this thread anyway. */
const CONCURRENCY = 4;

const ALGORITHMS: Readonly<Record<string, DigestAlgorithm>> = {
  md5: "MD5",
  crc32: "CRC32",
  crc32c: "CRC32C",
  crc64nvme: "CRC64NVME",
  sha1: "SHA1",
  sha256: "SHA256",
};

/**
 * Reads every file `manifestPath` lists under `datasetPath` (links never followed) and
 * compares it with its digest. `call` bounds each file's read (hung storage: STALLED).
 */
export async function verifyContent(
  datasetPath: string,
  manifestPath: string,
  call: StorageCall,
  signal?: AbortSignal,
): Promise<ContentCheck> {
  let checked = 0;
  let unchecked = 0;
  let mismatched = 0;
  let bytesRead = 0;
  const examples: string[] = [];
  const mismatch = (path: string, what: string) => {
    mismatched++;
    if (examples.length < EXAMPLES) examples.push(`${path}: ${what}`);
  };
  const batch: { path: string; bytes: number; digest: string }[] = [];
  const flush = async () => {
    const files = batch.splice(0, batch.length);
    await mapLimit(files, CONCURRENCY, async (file) => {
      signal?.throwIfAborted();
      const found = await call(`reading ${join(datasetPath, file.path)}`, (_stop, progressed) =>
        fileDigestOf(datasetPath, file, (bytes) => {
          bytesRead += bytes;
          progressed();
        }),
      );
      checked++;
      if (found !== file.digest) mismatch(file.path, describe(file.digest, found));
    });
  };
  for await (const file of manifestFiles(manifestPath)) {
    signal?.throwIfAborted();
    if (file.digest === undefined || !checkable(file.digest)) {
      unchecked++;
      continue;
    }
    batch.push({ path: file.path, bytes: file.bytes, digest: file.digest });
    if (batch.length >= 64) await flush();
  }
  await flush();
  return { checked, unchecked, mismatched, examples, bytesRead };
}

/** A digest this reads files for: an algorithm's, or a multipart ETag with its part size. */
function checkable(digest: string): boolean {
  return ALGORITHMS[prefixOf(digest)] !== undefined || partSizeOf(digest) !== undefined;
}

/** `md5parts:<part size>:<md5>-<parts>`'s part size (fetch/verification.ts multipartDigest). */
function partSizeOf(digest: string): number | undefined {
  const match = /^md5parts:([1-9][0-9]{0,15}):[0-9a-f]{32}-[1-9][0-9]*$/.exec(digest);
  const size = match === null ? undefined : Number(match[1]);
  return size !== undefined && Number.isSafeInteger(size) ? size : undefined;
}

function prefixOf(digest: string): string {
  return digest.slice(0, Math.max(0, digest.indexOf(":")));
}

/** What a mismatch was: its digest, or why there was none. */
function describe(expected: string, found: string): string {
  return found.includes(":") ? `expected ${expected}, found ${found}` : found;
}

/**
 * The file's digest in the manifest's form ("md5:<hex>", "<alg>:<base64>"), or why there is
 * none to compare ("missing", "is a symbolic link", "is not a regular file", its size).
 */
async function fileDigestOf(
  datasetPath: string,
  file: { readonly path: string; readonly bytes: number; readonly digest: string },
  onRead: (bytes: number) => void,
): Promise<string> {
  // A manifest is dsfetch's own, but a path out of the dataset is never read.
  const relative = normalize(file.path);
  if (isAbsolute(relative) || relative === ".." || relative.startsWith(`..${sep}`)) {
    return "names a path outside the dataset";
  }
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(join(datasetPath, relative), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return "missing";
    if (code === "ELOOP") return "is a symbolic link now";
    throw error;
  }
  try {
    const stats: Stats = await handle.stat();
    if (!stats.isFile()) return "is not a regular file now";
    if (stats.size !== file.bytes) return `${stats.size} bytes, not ${file.bytes}`;
    const partSize = partSizeOf(file.digest);
    if (partSize !== undefined)
      return await multipartDigestOf(handle, file.bytes, partSize, onRead);
    const algorithm = ALGORITHMS[prefixOf(file.digest)] as DigestAlgorithm;
    const digest = createDigest(algorithm);
    const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, Math.max(1, file.bytes)));
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      digest.update(buffer.subarray(0, bytesRead));
      onRead(bytesRead);
    }
    const raw = digest.digest();
    return algorithm === "MD5"
      ? `md5:${raw.toString("hex")}`
      : `${algorithm.toLowerCase()}:${raw.toString("base64")}`;
  } finally {
    await handle.close();
  }
}

/** The file's multipart ETag at `partSize`, in the manifest's form (`md5parts:…`). */
async function multipartDigestOf(
  handle: Awaited<ReturnType<typeof open>>,
  bytes: number,
  partSize: number,
  onRead: (bytes: number) => void,
): Promise<string> {
  const parts: Buffer[] = [];
  let part = createHash("md5");
  let inPart = 0;
  const buffer = Buffer.allocUnsafe(Math.min(READ_BYTES, Math.max(1, bytes)));
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
    if (bytesRead === 0) break;
    onRead(bytesRead);
    for (let at = 0; at < bytesRead; ) {
      const n = Math.min(bytesRead - at, partSize - inPart);
      part.update(buffer.subarray(at, at + n));
      at += n;
      inPart += n;
      if (inPart === partSize) {
        parts.push(part.digest());
        part = createHash("md5");
        inPart = 0;
      }
    }
  }
  if (inPart > 0 || parts.length === 0) parts.push(part.digest());
  return `md5parts:${partSize}:${multipartEtag(parts)}`;
}
