/**
 * The files an extraction thread wrote, as it hands them to the main thread and as the
 * manifest keeps them (archive/thread-result.ts, volumes/manifest.ts): one string of paths
 * separated by "\n", one Float64Array of sizes and one Uint32Array of CRC-32s, not an object
 * per file.
 *
 * Why: an archive of 1,000,000 empty files (an ImageNet-sized tar) peaked at 843 MiB RSS
 * (1.07 GiB for the extraction alone): ~240 B per file on the extraction thread, then the
 * structured clone of the array of objects on the main thread (~200 B per file), its copy
 * for the manifest, and the manifest's JSON text and buffer (~86 B each). Packed, the clone
 * is one string and transferred buffers, and the manifest is written from them in
 * pieces (volumes/manifest.ts). Review of session 23: "~1 KiB of memory per archive entry".
 *
 * Digests (SPEC §2: the manifest lists files "with sizes and digests"): an archive's files
 * had sizes only. Each file's CRC-32 (zlib's, the zip/gzip one) is kept as 4 bytes and made
 * into its manifest text only as the manifest is written, in the form objects' CRC32
 * checksums take there (fetch/verification.ts fileDigest): "crc32:" + base64 of the
 * big-endian value, so the digests of an archive's file and of the same bytes as an object
 * compare equal.
 *
 * Paths never contain "\n": names with control characters are refused (archive/entry-path.ts).
 */

export interface FileEntry {
  readonly path: string;
  readonly bytes: number;
  /** "crc32:<base64>" when the extractor computed it. */
  readonly digest?: string;
}

/** What crosses between threads: plain data (a class instance would lose its prototype). */
export interface PackedFileData {
  readonly paths: string;
  readonly sizes: Float64Array;
  /** Each file's CRC-32, in the order of `sizes`; absent: the files have no digests. */
  readonly crcs?: Uint32Array | undefined;
}

export class PackedFiles implements Iterable<FileEntry> {
  readonly length: number;
  private readonly paths: string;
  private readonly sizes: Float64Array;
  private readonly crcs: Uint32Array | undefined;

  constructor(data: PackedFileData) {
    if (data.crcs !== undefined && data.crcs.length !== data.sizes.length) {
      throw new Error(
        `internal: ${data.crcs.length} CRC-32s for ${data.sizes.length} extracted files`,
      );
    }
    this.paths = data.paths;
    this.sizes = data.sizes;
    this.crcs = data.crcs;
    this.length = data.sizes.length;
  }

  *[Symbol.iterator](): Iterator<FileEntry> {
    let start = 0;
    for (let i = 0; i < this.length; i++) {
      const end = this.paths.indexOf("\n", start);
      const stop = end === -1 ? this.paths.length : end;
      const path = this.paths.slice(start, stop);
      const bytes = this.sizes[i] as number;
      const crc = this.crcs?.[i];
      yield crc === undefined ? { path, bytes } : { path, bytes, digest: crc32Digest(crc) };
      start = stop + 1;
    }
  }

  /** Sum of the files' sizes. */
  totalBytes(): number {
    let sum = 0;
    for (const size of this.sizes) sum += size;
    return sum;
  }
}

/** Reused by crc32Digest: one digest is made at a time. */
const digestBytes = Buffer.alloc(4);

/** The manifest digest of a CRC-32: "crc32:" + base64 of its 4 big-endian bytes (see the header). */
export function crc32Digest(crc: number): string {
  digestBytes.writeUInt32BE(crc >>> 0);
  return `crc32:${digestBytes.toString("base64")}`;
}

/**
 * Packs `files` for posting (transfer `sizes.buffer`, and `crcs.buffer` when given). Throws
 * on a path with "\n" (the extractors refuse such names first: this would be a bug, never a
 * silent misreading).
 */
export function packFiles(files: readonly FileEntry[], crcs?: Uint32Array): PackedFileData {
  if (crcs !== undefined && crcs.length !== files.length) {
    throw new Error(`internal: ${crcs.length} CRC-32s for ${files.length} extracted files`);
  }
  const sizes = new Float64Array(files.length);
  const paths: string[] = new Array<string>(files.length);
  for (let i = 0; i < files.length; i++) {
    const file = files[i] as FileEntry;
    if (file.path.includes("\n")) {
      throw new Error(
        `internal: an extracted path holds a line feed: ${JSON.stringify(file.path)}`,
      );
    }
    paths[i] = file.path;
    sizes[i] = file.bytes;
  }
  return crcs === undefined
    ? { paths: paths.join("\n"), sizes }
    : { paths: paths.join("\n"), sizes, crcs };
}

/**
 * CRC-32s appended one per extracted file, 4 bytes each: an array of numbers would take 8
 * (or a heap number each past 2^31), and an archive may hold millions of files.
 */
export class Crc32List {
  private values = new Uint32Array(1024);
  private length = 0;

  /** Appends `crc`; returns its index (for set()). */
  push(crc: number): number {
    if (this.length === this.values.length) {
      const grown = new Uint32Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length] = crc;
    return this.length++;
  }

  get(index: number): number {
    this.check(index);
    return this.values[index] as number;
  }

  set(index: number, crc: number): void {
    this.check(index);
    this.values[index] = crc;
  }

  /** An index past the files listed is a bug: a digest given to the wrong file, never quietly. */
  private check(index: number): void {
    if (!(index >= 0 && index < this.length)) throw new Error(`internal: no CRC-32 at ${index}`);
  }

  /** The values, in a buffer of their own (to transfer). */
  packed(): Uint32Array {
    return this.values.slice(0, this.length);
  }
}
