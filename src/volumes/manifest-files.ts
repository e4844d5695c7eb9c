/**
 * The files a manifest lists, one at a time: path, size and digest, for `list --verify`
 * (verify-content.ts). The other readers keep only their count and total size
 * (manifest-lines.ts says why: a manifest of 1,000,000 files is 50-76 MB of JSON); this one
 * reads the manifest line by line in writeManifest's form (manifest.ts: the files last, one
 * per line), holding one line at a time. A manifest in another form (an older dsfetch's) is
 * parsed whole, as readManifest does.
 */
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";

export interface ListedFile {
  readonly path: string;
  readonly bytes: number;
  /** "md5:<hex>", "crc32:<base64>", …; absent where none was known (a multipart ETag). */
  readonly digest?: string;
}

const FILES_OPEN = '  "files": [';
const FILES_EMPTY = '  "files": []';
const FILES_CLOSE = "  ]";

/** Each file `manifestPath` lists, in its order. Throws what reading or parsing it throws. */
export async function* manifestFiles(manifestPath: string): AsyncGenerator<ListedFile> {
  const lines = createInterface({
    input: createReadStream(manifestPath, { encoding: "utf8" }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let inFiles = false;
  let lineForm = false;
  try {
    for await (const line of lines) {
      if (!inFiles) {
        if (line === FILES_EMPTY) {
          lineForm = true;
          break;
        }
        if (line === FILES_OPEN) inFiles = true;
        continue;
      }
      if (line === FILES_CLOSE) {
        lineForm = true;
        break;
      }
      const file = listedFile(JSON.parse(line.endsWith(",") ? line.slice(0, -1) : line));
      if (file === undefined) break;
      yield file;
    }
  } finally {
    lines.close();
  }
  if (lineForm) return;
  if (inFiles) throw new Error(`${manifestPath}: its file list is damaged`);
  // Not in the line form: the whole text, as manifest.ts reads such a manifest.
  const parsed = JSON.parse(await readFile(manifestPath, "utf8")) as { files?: unknown };
  if (!Array.isArray(parsed.files)) throw new Error(`${manifestPath}: it lists no files`);
  for (const value of parsed.files) {
    const file = listedFile(value);
    if (file === undefined) throw new Error(`${manifestPath}: its file list is damaged`);
    yield file;
  }
}

function listedFile(value: unknown): ListedFile | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { path, bytes, digest } = value as Record<string, unknown>;
  if (typeof path !== "string" || typeof bytes !== "number") return undefined;
  return typeof digest === "string" ? { path, bytes, digest } : { path, bytes };
}
