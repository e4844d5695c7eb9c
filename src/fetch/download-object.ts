/**
 * One object → one new file, by parallel ranged GETs written with positional writes. Every
 * range is pinned to the resolved object (If-Match on its ETag, and its versionId), so an
 * object overwritten mid-download answers 412 and is never mixed. A failed range resumes
 * from the bytes already written. Bytes are verified end to end against the ETag (MD5 or
 * multipart MD5) or an S3 additional checksum (fetch/verification.ts), and always against
 * the size.
 */
import { type FileHandle, open, rm } from "node:fs/promises";
import { formatBytes } from "../config/size.ts";
import { DsfetchError } from "../errors.ts";
import { preallocate } from "../util/preallocate.ts";
import { WRITE_PIECE } from "../util/write-piece.ts";
import { storageError } from "../volumes/attempt.ts";
import { CrcRanges } from "./checksum/index.ts";
import { DirectIoRefused, directIoApplies, openDirect, transferDirect } from "./download-direct.ts";
import type { ObjectGetter } from "./object-get.ts";
import { type ByteSpan, OrderedHasher } from "./ordered-hasher.ts";
import { relearnParts } from "./parts.ts";
import {
  fetchSpan,
  type RangeAnswer,
  type RangeSink,
  rangeContext,
  splitSpans,
} from "./range-fetch.ts";
import type { RetryOptions } from "./retry.ts";
import type { S3ErrorContext } from "./s3-errors.ts";
import {
  checkDigests,
  DigestMismatch,
  fileDigest,
  layoutUnchecked,
  planVerification,
  type VerificationPlan,
  type VerificationSource,
} from "./verification.ts";
import { hashFileParts, hashThreads, PartsHasher, WORKER_HASH_THRESHOLD } from "./worker-hasher.ts";

/** The object, and what HEAD said that can prove its bytes (verification.ts). */
export interface ObjectSource extends VerificationSource {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  /** Its HEAD's Last-Modified: pins ranges a store answers without an ETag (object-get.ts). */
  readonly lastModified?: string | undefined;
}

export interface DownloadObjectOptions {
  readonly getter: ObjectGetter;
  readonly source: ObjectSource;
  /** Created new (exclusive): never an existing file. */
  readonly destination: string;
  /** Part spans of a multipart object, when known (fetch/parts.ts). */
  readonly parts?: readonly ByteSpan[] | undefined;
  readonly rangeSize?: number;
  readonly concurrency?: number;
  readonly signal?: AbortSignal | undefined;
  readonly retry?: RetryOptions;
  readonly onBytes?: (bytes: number) => void;
  /** Called now and then while the written file is hashed in a worker (progress). */
  readonly onHashed?: () => void;
  readonly errorContext: S3ErrorContext;
  /**
   * Sees each ranged answer's headers before its body is read (range-fetch.ts); what it
   * throws fails the download at once, before those bytes are fetched.
   */
  readonly onAnswer?: ((answer: RangeAnswer) => void) | undefined;
  /**
   * Write with direct I/O where it applies (download-direct.ts). Off for a file read again
   * at once (a zip's central directory and entries would come back from the disk).
   */
  readonly directIo?: boolean | undefined;
}

export interface DownloadedObject {
  readonly bytes: number;
  /** "md5", "multipart-md5", "checksum:<alg>", or "size-only (<reason>)". */
  readonly verification: string;
  /** Digest of the whole file when one was computed, for the manifest: "md5:<hex>", "crc32:<base64>". */
  readonly digest: string | undefined;
  /** Bytes received more than once (after a failed attempt). */
  readonly refetchedBytes: number;
  readonly retries: number;
  /** "direct": written with O_DIRECT and hashed from memory (download-direct.ts). */
  readonly writes: "direct" | "buffered";
}

export const DEFAULT_RANGE_SIZE = 8 * 1024 * 1024;
export const DEFAULT_OBJECT_CONCURRENCY = 8;
/**
 * Received bytes are written in batches of this much (one write per batch): no larger than
 * WRITE_PIECE, whose large page-cache folios cost 3-10x the system CPU here.
 */
const WRITE_BATCH = WRITE_PIECE;

export async function downloadObject(options: DownloadObjectOptions): Promise<DownloadedObject> {
  const { source } = options;
  const plan = planVerification(source, options.parts);
  if (options.directIo === true && directIoApplies(plan, source.bytes)) {
    const direct = await downloadDirect(options, plan);
    if (direct !== undefined) return direct;
  }
  return downloadBuffered(options, plan);
}

/** With direct writes; undefined (nothing left behind) where the filesystem refuses them. */
async function downloadDirect(
  options: DownloadObjectOptions,
  plan: VerificationPlan,
): Promise<DownloadedObject | undefined> {
  const { source } = options;
  const file = await openDirect(options.destination).catch((error: unknown) => {
    throw storageError(error, options.destination);
  });
  if (file === undefined) return undefined;
  let transfer: Awaited<ReturnType<typeof transferDirect>>;
  try {
    // Blocks reserved first: aligned direct writes into them share the inode's lock, and a
    // disk that filled since the storage check fails before any byte is downloaded
    // (util/preallocate.ts).
    await preallocate(options.destination, source.bytes, { signal: options.signal }).catch(
      (error: unknown) => {
        throw options.signal?.aborted ? error : noSpaceFor(error, options);
      },
    );
    transfer = await transferDirect(file, options, plan.spans ?? []);
  } catch (error) {
    await file.close();
    if (!(error instanceof DirectIoRefused)) throw error;
    await rm(options.destination, { force: true });
    return undefined;
  }
  await file.close();
  const { digests, ...stats } = transfer;
  await verifyWritten(options, plan, digests);
  return {
    ...stats,
    bytes: source.bytes,
    verification: plan.method,
    digest: fileDigest(plan, digests),
    writes: "direct",
  };
}

/** A disk too small for the whole object, found before the download: says how much. */
function noSpaceFor(error: unknown, options: DownloadObjectOptions): DsfetchError {
  const failure = storageError(error, options.destination);
  if (failure.code !== "NO_SPACE") return failure;
  const { dataset } = options.errorContext;
  const bytes = options.source.bytes;
  return new DsfetchError(
    "NO_SPACE",
    `${dataset}: needs ${formatBytes(bytes)} (${bytes} bytes) on the device holding ${options.destination}, and it has less free`,
    { dataset, hint: failure.hint, cause: error },
  );
}

async function downloadBuffered(
  options: DownloadObjectOptions,
  plan: VerificationPlan,
): Promise<DownloadedObject> {
  const { source } = options;
  // Created read-only (the descriptor still writes): publishing needs no chmod per file.
  const file = await open(options.destination, "wx+", 0o444);
  try {
    const hasher = digester(plan, source, options.destination, file, options.onHashed);
    let transfer: TransferStats;
    try {
      transfer = await transferRanges(file, options, hasher);
    } catch (error) {
      hasher?.dispose?.();
      throw error;
    }
    const digests = hasher === undefined ? [] : await hasher.finish(source.bytes);
    await verifyWritten(options, plan, digests);
    return {
      ...transfer,
      bytes: source.bytes,
      verification: plan.method,
      digest: fileDigest(plan, digests),
      writes: "buffered",
    };
  } finally {
    await file.close();
  }
}

/**
 * Throws INTEGRITY unless the digests match (checkDigests). Before that, a multipart layout
 * inferred from the first and last parts' sizes (parts.ts) is asked for part by part: parts
 * of several sizes whose total still fits (UploadPartCopy from objects of several sizes)
 * failed INTEGRITY at every run. When the parts differ from it, the written file is hashed
 * again over them. Nothing is downloaded again.
 */
async function verifyWritten(
  options: DownloadObjectOptions,
  plan: VerificationPlan,
  digests: readonly Buffer[],
): Promise<void> {
  const { source, errorContext } = options;
  const uri = `s3://${source.bucket}/${source.key}`;
  try {
    checkDigests(plan, digests, errorContext.dataset, uri);
  } catch (error) {
    const { algorithm, spans } = plan;
    if (!(error instanceof DigestMismatch) || algorithm === undefined || spans === undefined) {
      throw error;
    }
    // Each answer is progress for the clock this runs under (a folder's has no tail bound).
    const learned = await relearnParts(
      options.getter,
      source,
      spans,
      options.retry,
      options.onHashed,
    );
    options.signal?.throwIfAborted();
    if (learned.kind === "same") throw error;
    if (learned.kind === "unknown") throw layoutUnchecked(error);
    const again = await hashFileParts(
      options.destination,
      learned.spans,
      algorithm,
      options.onHashed,
      options.signal,
    );
    checkDigests({ ...plan, spans: learned.spans }, again, errorContext.dataset, uri);
  }
}

/** Computes the plan's digests while the ranges land (transferRanges calls `written`). */
interface Digester {
  /** Bytes [start, start + length) are written; `batch` holds them. */
  written(start: number, batch: readonly Buffer[], contiguousEnd: number): void;
  finish(total: number): Promise<Buffer[]>;
  dispose?(): void;
}

function digester(
  plan: VerificationPlan,
  source: ObjectSource,
  path: string,
  file: FileHandle,
  onHashed: (() => void) | undefined,
): Digester | undefined {
  const { algorithm, spans } = plan;
  if (algorithm === undefined || spans === undefined) return undefined;
  if (algorithm === "CRC32") {
    // zlib's native CRC32 (2.6-4.7 GB/s) costs less in stream than a follower reading back,
    // and ranges combine in any order (checksum/combine.ts): no ordered pass at all.
    const crcs = new CrcRanges(
      algorithm,
      spans.map((span) => span.start),
    );
    return {
      written: (start, batch) => {
        const hasher = crcs.hasher(start);
        for (const chunk of batch) hasher.update(chunk);
        hasher.end();
      },
      finish: async () => spans.map((span) => crcs.digest(span.start, span.end)),
    };
  }
  const follower =
    source.bytes >= WORKER_HASH_THRESHOLD
      ? new PartsHasher(path, spans, algorithm, hashThreads(), onHashed)
      : new OrderedHasher(file, spans, algorithm);
  return {
    written: (_start, _batch, contiguousEnd) => follower.advanceTo(contiguousEnd),
    finish: (total) => follower.finish(total),
    dispose: () => {
      if (follower instanceof PartsHasher) follower.dispose();
    },
  };
}

interface TransferStats {
  refetchedBytes: number;
  retries: number;
}

async function transferRanges(
  file: FileHandle,
  options: DownloadObjectOptions,
  hasher: Digester | undefined,
): Promise<TransferStats> {
  const { source } = options;
  const spans = splitSpans(source.bytes, Math.max(1, options.rangeSize ?? DEFAULT_RANGE_SIZE));
  const written = spans.map(() => 0);
  let contiguousIndex = 0;
  const contiguousEnd = (): number => {
    while (contiguousIndex < spans.length) {
      const span = spans[contiguousIndex] as ByteSpan;
      const done = written[contiguousIndex] ?? 0;
      if (done < span.end - span.start) return span.start + done;
      contiguousIndex += 1;
    }
    return source.bytes;
  };
  const stats: TransferStats = { refetchedBytes: 0, retries: 0 };
  const serialWrite = oneWriteAtATime();
  const writeback = earlyWriteback(file);
  const abort = new AbortController();
  const signal =
    options.signal === undefined ? abort.signal : AbortSignal.any([abort.signal, options.signal]);
  const context = rangeContext(options, signal, stats);

  /** Free write batches, reused by every range of the download. */
  const batches: Buffer[] = [];
  /**
   * Positional writes in batches of WRITE_BATCH (one write each). Bodies arrive as views of
   * a reused buffer (http1.ts) and are copied into the batch; a full batch is written while
   * the next one fills, and the connection waits until the write is done.
   */
  const fileSink = (index: number, span: ByteSpan): RangeSink => {
    let batch: Buffer | undefined;
    let filled = 0;
    /** Offset in the span where the next batch goes. */
    let nextAt = written[index] ?? 0;
    /** This range's writes, in order. */
    let writing: Promise<void> = Promise.resolve();
    let failure: unknown;
    const check = (): void => {
      if (failure !== undefined) throw failure;
    };
    const startWrite = (): void => {
      const buffer = batch as Buffer;
      const bytes = filled;
      batch = undefined;
      filled = 0;
      const at = span.start + nextAt;
      nextAt += bytes;
      const view = buffer.subarray(0, bytes);
      writing = writing.then(async () => {
        try {
          if (failure !== undefined) return;
          await serialWrite(() => writeAll(file, [view], bytes, at));
          written[index] = (written[index] ?? 0) + bytes;
          writeback.wrote(bytes);
          options.onBytes?.(bytes);
          hasher?.written(at, [view], contiguousEnd());
        } catch (error) {
          // A full or failing disk is not the store's fault: never retried, reported as storage.
          failure ??= storageError(error, options.destination);
        } finally {
          batches.push(buffer);
        }
      });
    };
    return {
      kept: () => written[index] ?? 0,
      push: (chunk) => {
        let full = false;
        for (let at = 0; at < chunk.length; ) {
          batch ??= batches.pop() ?? Buffer.allocUnsafe(WRITE_BATCH);
          const copied = chunk.copy(batch, filled, at);
          filled += copied;
          at += copied;
          if (filled === batch.length) {
            startWrite();
            full = true;
          }
        }
        return full ? writing.then(check) : undefined;
      },
      flush: async () => {
        if (batch !== undefined && filled > 0) startWrite();
        await writing;
        // After a failed write, a new attempt resumes from what is on disk.
        nextAt = written[index] ?? 0;
        check();
      },
      failed: () => failure,
    };
  };

  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < spans.length && !signal.aborted) {
      const index = next++;
      const span = spans[index] as ByteSpan;
      try {
        await fetchSpan(context, span, fileSink(index, span));
      } catch (error) {
        abort.abort(error);
        throw error;
      }
    }
  };
  const workers = Math.max(
    1,
    Math.min(options.concurrency ?? DEFAULT_OBJECT_CONCURRENCY, spans.length),
  );
  const results = await Promise.allSettled(Array.from({ length: workers }, worker));
  await writeback.settled();
  const failed = results.find((result) => result.status === "rejected");
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  if (options.signal?.aborted) throw options.signal.reason;
  return stats;
}

/** Written bytes after which the file's dirty pages are sent to the disk (not awaited). */
const WRITEBACK_STEP = 256 * 1024 * 1024;

/**
 * Starts writing the file back to the disk while it downloads. The kernel starts on its own
 * only past dirty_background_ratio (10% of memory: 2.4 GB on 24 GiB), so a 2 GiB object was
 * all still in memory when publishing synced the tree: 0.8-0.9 s spent waiting at the end.
 * Durability still comes from that sync; this only moves the disk's work earlier.
 */
function earlyWriteback(file: FileHandle): {
  wrote(bytes: number): void;
  settled(): Promise<void>;
} {
  let sinceLast = 0;
  let running: Promise<void> | undefined;
  return {
    wrote(bytes) {
      sinceLast += bytes;
      if (sinceLast < WRITEBACK_STEP || running !== undefined) return;
      sinceLast = 0;
      running = file
        .datasync()
        .catch(() => {})
        .finally(() => {
          running = undefined;
        });
    },
    settled: async () => {
      await running;
    },
  };
}

/**
 * Runs the file's writes one after the other. Ranges land in parallel, but writes to one
 * file from several thread-pool threads contend for its inode lock, and waiting writers
 * spin: 2 GiB in 1 MiB batches took 9.6 s of system CPU with 4 threads in flight against
 * 1.0 s one at a time (ext4, 2 vCPUs; the page-cache copy itself is the same).
 */
function oneWriteAtATime(): <T>(write: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (write) => {
    const result = tail.then(write);
    tail = result.catch(() => {});
    return result;
  };
}

/**
 * writev(2) may write less than asked without an error (a file size limit, a disk filling
 * up): the rest is written again, and a write of nothing is ENOSPC. Without this, bytes
 * counted as written (and hashed in stream, for CRC32) could be missing from the file.
 */
async function writeAll(
  file: FileHandle,
  batch: readonly Buffer[],
  bytes: number,
  position: number,
): Promise<void> {
  let done = (await file.writev(batch as Buffer[], position)).bytesWritten;
  while (done < bytes) {
    const rest: Buffer[] = [];
    let skip = done;
    for (const chunk of batch) {
      if (skip >= chunk.length) skip -= chunk.length;
      else {
        rest.push(skip === 0 ? chunk : chunk.subarray(skip));
        skip = 0;
      }
    }
    const more = (await file.writev(rest, position + done)).bytesWritten;
    if (more === 0) {
      const error = new Error(
        `no space left: wrote ${done} of ${bytes} bytes`,
      ) as NodeJS.ErrnoException;
      error.code = "ENOSPC";
      throw error;
    }
    done += more;
  }
}
