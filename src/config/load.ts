/**
 * Where the datasets array comes from: `--datasets <file>`, `--datasets -` (standard
 * input) or the DSFETCH_DATASETS environment variable (JSON text). The only I/O of config/.
 */
import { readFile } from "node:fs/promises";
import { DsfetchError } from "../errors.ts";
import { MAX_CONFIG_BYTES, parseDatasetsText, SPLIT_HINT } from "./datasets-array.ts";
import type { DatasetSpec } from "./types.ts";

export interface DatasetsSource {
  /** A file path, or "-" for standard input. */
  datasets?: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
  stdin?: NodeJS.ReadableStream | undefined;
}

export async function loadDatasets(source: DatasetsSource): Promise<readonly DatasetSpec[]> {
  const { text, label } = await readSource(source);
  return parseDatasetsText(text, label, source.env);
}

async function readSource(source: DatasetsSource): Promise<{ text: string; label: string }> {
  if (source.datasets === undefined) {
    const fromEnv = source.env.DSFETCH_DATASETS;
    if (fromEnv === undefined || fromEnv.trim() === "") {
      throw new DsfetchError("USAGE", "no datasets given", {
        hint: "pass --datasets <file>, --datasets - (standard input), or set DSFETCH_DATASETS to the JSON array",
      });
    }
    return { text: fromEnv, label: "DSFETCH_DATASETS" };
  }
  if (source.datasets === "-") {
    return { text: await readStream(source.stdin ?? process.stdin), label: "standard input" };
  }
  const path = source.datasets;
  try {
    const buffer = await readFile(path);
    if (buffer.length > MAX_CONFIG_BYTES) {
      throw new DsfetchError("CONFIG_INVALID", `${path}: the datasets file is larger than 16 MiB`, {
        hint: SPLIT_HINT,
      });
    }
    return { text: decodeUtf8(buffer, path), label: path };
  } catch (error) {
    if (error instanceof DsfetchError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "no such file"
        : code === "EACCES"
          ? "permission denied"
          : code === "EISDIR"
            ? "is a directory"
            : (error as Error).message;
    throw new DsfetchError("USAGE", `--datasets ${path}: cannot read the datasets file: ${why}`, {
      hint: "give the path of a JSON file holding the datasets array",
      cause: error,
    });
  }
}

async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
    total += buffer.length;
    if (total > MAX_CONFIG_BYTES) {
      throw new DsfetchError(
        "CONFIG_INVALID",
        "standard input: the datasets array is larger than 16 MiB",
        { hint: SPLIT_HINT },
      );
    }
    chunks.push(buffer);
  }
  return decodeUtf8(Buffer.concat(chunks), "standard input");
}

function decodeUtf8(buffer: Buffer, label: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(buffer);
  } catch {
    throw new DsfetchError("CONFIG_INVALID", `${label}: the datasets array is not UTF-8 text`);
  }
}
