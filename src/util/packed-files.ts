/**
 * The files an extraction thread wrote, as it hands them to the main thread and as the
 * manifest keeps them (archive/thread-result.ts, volumes/manifest.ts): one string of paths separated by "\n" and one Float64Array of sizes,
 * not an object per file.
 *
 * Why: an archive of 1,000,000 empty files (an ImageNet-sized tar) peaked at 843 MiB RSS
 * (1.07 GiB for the extraction alone): ~240 B per file on the extraction thread, then the
 * structured clone of the array of objects on the main thread (~200 B per file), its copy
 * for the manifest, and the manifest's JSON text and buffer (~86 B each). Packed, the clone
 * is one string and one transferred buffer, and the manifest is written from them in
 * pieces (volumes/manifest.ts). Review of session 23: "~1 KiB of memory per archive entry".
 *
 * Paths never contain "\n": names with control characters are refused (archive/entry-path.ts).
 */

export interface FileEntry {
  readonly path: string;
  readonly bytes: number;
}

/** What crosses between threads: plain data (a class instance would lose its prototype). */
export interface PackedFileData {
  readonly paths: string;
  readonly sizes: Float64Array;
}

export class PackedFiles implements Iterable<FileEntry> {
  readonly length: number;
  private readonly paths: string;
  private readonly sizes: Float64Array;

  constructor(data: PackedFileData) {
    this.paths = data.paths;
    this.sizes = data.sizes;
    this.length = data.sizes.length;
  }

  *[Symbol.iterator](): Iterator<FileEntry> {
    let start = 0;
    for (let i = 0; i < this.length; i++) {
      const end = this.paths.indexOf("\n", start);
      const stop = end === -1 ? this.paths.length : end;
      yield { path: this.paths.slice(start, stop), bytes: this.sizes[i] as number };
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

/**
 * Packs `files` for posting (transfer `sizes.buffer`). Throws on a path with "\n" (the
 * extractors refuse such names first: this would be a bug, never a silent misreading).
 */
export function packFiles(files: readonly FileEntry[]): PackedFileData {
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
  return { paths: paths.join("\n"), sizes };
}
