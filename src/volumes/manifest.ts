/**
 * The manifest written beside every published dataset (SPEC §2): where it came from, what
 * was resolved, the files with sizes and digests, and how they were verified. Reading is
 * defensive: a manifest that does not parse is treated as absent, never trusted.
 */
import { constants } from "node:fs";
import { type FileHandle, open, rm } from "node:fs/promises";
import { type FileTally, OTHER_FORM, readManifestLines } from "./manifest-lines.ts";
import { openNewFile } from "./no-follow.ts";
import type { TreeSeal } from "./tree-seal.ts";

export const MANIFEST_VERSION = 1;

export interface ManifestFile {
  readonly path: string;
  readonly bytes: number;
  /** e.g. "md5:…", "sha256:…" */
  readonly digest?: string | undefined;
}

/**
 * Files that are not held as an entry each: made one at a time when the manifest is written.
 * An archive's stay packed (util/packed-files.ts PackedFiles); a folder's are made from its
 * listing (fetch/kept-objects.ts ListingFiles).
 */
export interface FileView extends Iterable<ManifestFile> {
  readonly length: number;
  /** Sum of the files' sizes. */
  totalBytes(): number;
}

/** An archive's and a folder's files are views (FileView); an object's is one. */
export type WrittenFiles = readonly ManifestFile[] | FileView;

/**
 * A manifest's files: as written, or as read back (readManifest: their count and total size
 * only, manifest-lines.ts; the whole list from a manifest of an older dsfetch).
 */
export type ManifestFiles = WrittenFiles | FileTally;

export interface Manifest<Files extends ManifestFiles = ManifestFiles> {
  readonly version: typeof MANIFEST_VERSION;
  readonly name: string;
  /** `s3://bucket/key`, never with credentials. */
  readonly uri: string;
  readonly endpoint: string | undefined;
  readonly kind: "object" | "prefix";
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
  /** For a prefix: digest of the listing (fetch/resolve.ts). */
  readonly listingDigest: string | undefined;
  readonly bytes: number;
  readonly files: Files;
  readonly verification: string;
  readonly createdAt: string;
  readonly host: string;
  /**
   * The tree as published (tree-seal.ts): a later run tells a tree changed since from it.
   * Absent in manifests of a dsfetch before 2026-12-07, and in an attempt's own. Not checked
   * with the manifest: a seal of another form (another dsfetch's) is not used (inspect.ts),
   * and its manifest is still a manifest (review: it was taken for none, and the dataset for
   * one dsfetch did not publish).
   */
  readonly seal?: TreeSeal | undefined;
}

/**
 * The manifest at `path`, or undefined when there is none or it is damaged, or this user may
 * not read it (manifestReadRefusal tells that case apart). Its files come back as a count and
 * a total size (FileTally), read a piece at a time.
 */
export async function readManifest(path: string): Promise<Manifest | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch {
    return undefined;
  }
  try {
    // A manifest is a regular file. Anything else is no manifest, and reading it again (below)
    // could wait for good: a FIFO (the tests' hung storage) blocks each open until a writer.
    const info = await handle.stat();
    if (!info.isFile()) return undefined;
    const lines = await readManifestLines(handle, info.size);
    if (lines !== OTHER_FORM) {
      const value = { ...lines.head, files: lines.files };
      return isManifestHead(value) ? (value as Manifest) : undefined;
    }
    // Written by an older dsfetch (files not last, or not one per line), or damaged: whole,
    // from the same open file.
    return parseManifestText(await textFromStart(handle));
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * The error opening `path` for reading when a file is there that this user may not read
 * (EACCES, EPERM: another user's manifest written 0600 under a umask of 077 by a dsfetch
 * before 2026-12-06); undefined otherwise (readable, absent, or another error). readManifest
 * takes such a manifest for none, and the dataset it names was refused as "not published by
 * dsfetch", with a hint to remove it (review, 2026-12-06). Opened without blocking: a FIFO
 * (the tests' hung storage) would wait for a writer.
 */
export async function manifestReadRefusal(
  path: string,
): Promise<NodeJS.ErrnoException | undefined> {
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    await handle.close().catch(() => {});
    return undefined;
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    return code === "EACCES" || code === "EPERM" ? (error as NodeJS.ErrnoException) : undefined;
  }
}

/** The whole file's text, read from its start whatever was read before. */
async function textFromStart(handle: FileHandle): Promise<string> {
  const pieces: Buffer[] = [];
  for (let position = 0; ; ) {
    const piece = Buffer.allocUnsafe(1 << 20);
    const { bytesRead } = await handle.read(piece, 0, piece.length, position);
    if (bytesRead === 0) break;
    pieces.push(piece.subarray(0, bytesRead));
    position += bytesRead;
  }
  return Buffer.concat(pieces).toString("utf8");
}

/** A manifest's whole text parsed and checked; undefined when it is no manifest. */
export function parseManifestText(text: string): Manifest | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return isManifest(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether `value` has every field a manifest is read for, with its type. Valid JSON with a
 * field damaged (`"files": null`, a `createdAt` that is no time) made `list` and `prune` fail
 * as INTERNAL, and `fetch` reuse the dataset (review): it is a damaged manifest like any.
 */
function isManifest(value: unknown): value is Manifest {
  return (
    isManifestHead(value) &&
    Array.isArray((value as { files?: unknown }).files) &&
    (value as { files: unknown[] }).files.every(isManifestFile)
  );
}

/** The same for every field but `files`. */
function isManifestHead(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const m = value as Record<string, unknown>;
  const optionalString = (field: unknown) => field === undefined || typeof field === "string";
  return (
    m.version === MANIFEST_VERSION &&
    typeof m.name === "string" &&
    typeof m.uri === "string" &&
    (m.kind === "object" || m.kind === "prefix") &&
    optionalString(m.endpoint) &&
    optionalString(m.etag) &&
    optionalString(m.versionId) &&
    optionalString(m.listingDigest) &&
    isSize(m.bytes) &&
    typeof m.verification === "string" &&
    typeof m.createdAt === "string" &&
    !Number.isNaN(Date.parse(m.createdAt)) &&
    optionalString(m.host)
  );
}

function isManifestFile(file: unknown): file is ManifestFile {
  if (typeof file !== "object" || file === null) return false;
  const f = file as Record<string, unknown>;
  return (
    typeof f.path === "string" &&
    isSize(f.bytes) &&
    (f.digest === undefined || typeof f.digest === "string")
  );
}

function isSize(field: unknown): boolean {
  return typeof field === "number" && Number.isSafeInteger(field) && field >= 0;
}

/** Sum of the files' sizes. */
export function fileBytes(files: ManifestFiles): number {
  if (!Array.isArray(files)) return (files as FileView | FileTally).totalBytes();
  let sum = 0;
  for (const file of files as readonly ManifestFile[]) sum += file.bytes;
  return sum;
}

/** Text written at a time: the files of a large archive are never one string. */
const WRITE_PIECE = 1 << 20;

/**
 * Writes `manifest` (and any fields added to it) as JSON to `path` (mode 0644 whatever the
 * umask), the files last, one per line, in pieces: the JSON text of 1,000,000 files is
 * ~90 MB, which JSON.stringify held whole, and again as the buffer written
 * (util/packed-files.ts). `durable`: synced before it returns. On failure nothing is left
 * (review: a full disk left an empty `….pending.….tmp` among the manifests, for good).
 */
export async function writeManifest(
  path: string,
  manifest: Manifest<WrittenFiles>,
  options: { readonly durable?: boolean } = {},
): Promise<void> {
  const { files, ...rest } = manifest;
  const head = JSON.stringify(rest, null, 2);
  // Never through a link a teammate put at its name (a pending manifest's name is known to
  // the group: no-follow.ts); one left by an earlier try of this attempt is replaced.
  await rm(path, { force: true });
  const handle = await openNewFile(path);
  try {
    try {
      // Readable by every user of the team, whatever this process's umask: open's mode is
      // masked by it, and a teammate's umask 077 left a 0600 manifest, which made every other
      // user's job fail on a valid dataset (review, 2026-12-06). Pending manifests are
      // written here too, and read by other users' jobs (occupant.ts).
      // Only where the umask took bits, and never fatal: a filesystem that refuses chmod
      // (some FUSE or SMB mounts) wrote manifests before this; other users then get the
      // clear error of an unreadable manifest (occupant.ts), not this run a failed publish.
      if (((await handle.stat()).mode & 0o777) !== 0o644) await handle.chmod(0o644).catch(() => {});
      let piece = `${head.slice(0, head.lastIndexOf("}")).trimEnd()},\n  "files": [`;
      let first = true;
      for (const file of files) {
        piece += `${first ? "" : ","}\n    ${JSON.stringify(file)}`;
        first = false;
        if (piece.length >= WRITE_PIECE) {
          await handle.write(piece);
          piece = "";
        }
      }
      await handle.write(`${piece}${first ? "]" : "\n  ]"}\n}\n`);
      if (options.durable === true) await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    await rm(path, { force: true }).catch(() => {});
    throw error;
  }
}
