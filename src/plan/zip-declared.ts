/**
 * What a zip object declares it expands to, read by `plan` from its central directory with
 * ranged requests into memory (no file written): fetch refuses a zip whose entries do not fit
 * its ephemeral volume, or the free space, only once it is downloaded, and `plan` passed it
 * (review, 2026-12-05). The central directory is parsed by the extractor's own reader
 * (archive/zip-central.ts), so a zip that reader refuses is refused here too, before the
 * download.
 */
import { DEFAULT_LIMITS } from "../archive/limits.ts";
import { type CentralDirectory, readCentralDirectory, ZipErrors } from "../archive/zip-central.ts";
import { cp437Warning, planEntries } from "../archive/zip-extract.ts";
import { DsfetchError } from "../errors.ts";
import type { ObjectGetter } from "../fetch/object-get.ts";
import { fetchSpan, type RangeSink } from "../fetch/range-fetch.ts";
import type { ResolvedObject } from "../fetch/resolve.ts";
import type { RetryOptions } from "../fetch/retry.ts";
import type { S3ErrorContext } from "../fetch/s3-errors.ts";

/** Bytes of the object fetched at most (a larger central directory is not read by plan). */
const MAX_FETCHED = 64 * 1024 * 1024;
/** Bytes fetched at least per request (the central directory is read in such pieces). */
const MIN_REQUEST = 1024 * 1024;
/** Requests at most: the end record, a Zip64 record, then the directory's pieces. */
const MAX_REQUESTS = 72;

/** A read the bytes in memory cannot answer yet: fetched, then the parse starts again. */
class NotFetched extends Error {
  readonly start: number;
  readonly end: number;
  constructor(start: number, end: number) {
    super(`bytes ${start}-${end} are not fetched`);
    this.start = start;
    this.end = end;
  }
}

interface Region {
  readonly start: number;
  readonly bytes: Buffer;
}

export interface DeclaredZip {
  /** The sum of the entries' declared (uncompressed) sizes. */
  readonly bytes: number;
  readonly entries: number;
  /** checkEntries: what fetch would say beside the result (names read as CP437). */
  readonly warning?: string | undefined;
}

/**
 * The declared size of `object`'s entries, or undefined when its central directory is larger
 * than plan reads. Throws ARCHIVE_INVALID as the extractor would, and S3 errors as fetch.
 */
export async function declaredZipBytes(
  object: ResolvedObject,
  getter: ObjectGetter,
  {
    maxEntries,
    errorContext,
    retry,
    signal,
    checkEntries = false,
  }: {
    maxEntries: number;
    /** Every entry checked as the extraction checks it (planEntries), for `plan`. */
    checkEntries?: boolean;
    errorContext: S3ErrorContext;
    retry?: RetryOptions | undefined;
    signal?: AbortSignal | undefined;
  },
): Promise<DeclaredZip | undefined> {
  const regions: Region[] = [];
  let fetched = 0;
  const read = (buffer: Buffer, offset: number, length: number, position: number): number => {
    const region = regions.find((r) => r.start <= position && position < r.start + r.bytes.length);
    if (region === undefined) {
      if (position >= object.bytes) return 0;
      throw new NotFetched(position, Math.min(object.bytes, position + length));
    }
    const from = position - region.start;
    return region.bytes.copy(buffer, offset, from, Math.min(region.bytes.length, from + length));
  };
  const errors = new ZipErrors(errorContext.dataset);
  for (let requests = 0; requests < MAX_REQUESTS; requests++) {
    let directory: CentralDirectory;
    try {
      directory = readCentralDirectory(read, object.bytes, maxEntries, errors);
    } catch (error) {
      if (!(error instanceof NotFetched)) throw error;
      const end = Math.min(object.bytes, Math.max(error.end, error.start + MIN_REQUEST));
      if (fetched + (end - error.start) > MAX_FETCHED) return undefined;
      regions.push({
        start: error.start,
        bytes: await fetchRange(object, getter, error.start, end, { errorContext, retry, signal }),
      });
      fetched += end - error.start;
      continue;
    }
    // The entries checked as the extraction checks them before its first write (names,
    // types, methods, sizes, collisions, layout): plan refuses what fetch refuses (it passed
    // `../evil.txt` and `dir\b.txt`: exploratory tester, 2026-12-07). The size bound is
    // plan's own to say (dry-run.ts zipOverBound).
    // Only for plan: fetch's look before its download (stage/expand.ts) leaves these to the
    // extraction, which makes them anyway (a million entries: ~10 s on the main thread).
    // Its warning too: plan said nothing of names read as CP437 (session 47's note).
    const warning = checkEntries
      ? cp437Warning(
          planEntries(
            directory,
            { ...DEFAULT_LIMITS, maxEntries, maxBytes: Number.POSITIVE_INFINITY },
            errors,
          ),
        )
      : undefined;
    let bytes = 0;
    for (const entry of directory.entries) bytes += entry.uncompressedSize;
    return { bytes, entries: directory.entries.length, warning };
  }
  return undefined;
}

async function fetchRange(
  object: ResolvedObject,
  getter: ObjectGetter,
  start: number,
  end: number,
  {
    errorContext,
    retry,
    signal,
  }: {
    errorContext: S3ErrorContext;
    retry?: RetryOptions | undefined;
    signal?: AbortSignal | undefined;
  },
): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(end - start);
  let kept = 0;
  const sink: RangeSink = {
    kept: () => kept,
    push: (chunk) => {
      chunk.copy(bytes, kept);
      kept += chunk.length;
    },
    flush: async () => {},
  };
  const stats = { refetchedBytes: 0, retries: 0 };
  await fetchSpan(
    {
      getter,
      source: object,
      signal: signal ?? new AbortController().signal,
      retry,
      errorContext,
      stats,
    },
    { start, end },
    sink,
  );
  if (kept !== bytes.length) {
    throw new DsfetchError(
      "TRANSIENT",
      `${errorContext.dataset}: a range of ${errorContext.uri} came back short`,
    );
  }
  return bytes;
}
