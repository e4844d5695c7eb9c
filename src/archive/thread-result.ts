/**
 * An extraction thread's answer (extract-worker.ts, zip-worker.ts) and what the main thread
 * makes of it: the files packed (util/packed-files.ts says why), the sizes' and CRC-32s'
 * buffers transferred.
 */
import {
  type FileEntry,
  type PackedFileData,
  PackedFiles,
  packFiles,
} from "../util/packed-files.ts";

/** What an extraction thread answers with (extract-worker.ts, zip-worker.ts). */
export interface PostedExtractResult {
  readonly files: PackedFileData;
  /** Bytes written to regular files. */
  readonly bytes: number;
  /** Files written by the parallel writes (0: every file one at a time). */
  readonly writtenInParallel: number;
  /** What the user is told beside the result (zip-extract.ts cp437Warning). */
  readonly warnings: readonly string[];
}

/** What an extraction on a thread resolves to (extract-in-worker.ts, zip-in-worker.ts). */
export interface ThreadExtractResult {
  readonly files: PackedFiles;
  readonly bytes: number;
  readonly writtenInParallel: number;
  readonly warnings: readonly string[];
}

/**
 * The worker's side: `result` packed, and the buffers to transfer with it (the sizes', and
 * the files' CRC-32s: the manifest's digests, SPEC §2).
 */
export function postedResult(result: {
  readonly files: readonly FileEntry[];
  /** Each file's CRC-32, by index of `files`. */
  readonly crcs: Uint32Array;
  readonly bytes: number;
  readonly writtenInParallel: number;
  readonly warnings?: readonly string[];
}): { result: PostedExtractResult; transfer: ArrayBuffer[] } {
  const files = packFiles(result.files, result.crcs);
  return {
    result: {
      files,
      bytes: result.bytes,
      writtenInParallel: result.writtenInParallel,
      warnings: result.warnings ?? [],
    },
    transfer: [files.sizes.buffer as ArrayBuffer, result.crcs.buffer as ArrayBuffer],
  };
}

/** The main thread's side of postedResult. */
export function receivedResult(result: PostedExtractResult): ThreadExtractResult {
  return {
    files: new PackedFiles(result.files),
    bytes: result.bytes,
    writtenInParallel: result.writtenInParallel,
    warnings: result.warnings,
  };
}
