/**
 * Archive datasets (SPEC §5): the object is expanded into the dataset directory and not
 * kept. Tar-family archives expand while they download: parallel ranged GETs → in-order
 * stream → ETag hash → decompressor → tar extraction, with no intermediate archive file;
 * the compressed bytes are verified against the ETag at the end, and a mismatch discards
 * the whole expanded tree (the caller removes the attempt). Zip needs its central
 * directory at the end of the file: it is downloaded (verified) beside the tree, expanded
 * from its central directory, then removed.
 */
import { rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { DAMAGED_IN_STORE_OR_ON_THE_WAY } from "../archive/decompress.ts";
import {
  type ExtractThread,
  extractTarInWorker,
  startExtractThread,
  stopExtractThread,
} from "../archive/extract-in-worker.ts";
import { type ExtractLimits, expandedLimitText } from "../archive/limits.ts";
import { checkMagic } from "../archive/magic.ts";
import { extractZipInWorker, startZipThread } from "../archive/zip-in-worker.ts";
import { formatBytes } from "../config/size.ts";
import type { TransferTuning } from "../config/tuning.ts";
import type { DatasetSpec } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";
import type { StoreClient } from "../fetch/client.ts";
import { downloadObject } from "../fetch/download-object.ts";
import type { ByteSpan } from "../fetch/ordered-hasher.ts";
import { orderedRanges } from "../fetch/ordered-ranges.ts";
import { relearnParts } from "../fetch/parts.ts";
import type { ResolvedObject } from "../fetch/resolve.ts";
import type { RetryOptions } from "../fetch/retry.ts";
import type { S3ErrorContext } from "../fetch/s3-errors.ts";
import { StreamingVerifier } from "../fetch/streaming-verifier.ts";
import { DigestMismatch, layoutUnchecked } from "../fetch/verification.ts";
import { declaredZipBytes } from "../plan/zip-declared.ts";
import { BufferPool } from "../util/buffer-pool.ts";
import { Channel } from "../util/channel.ts";
import { ChunkLedger } from "../util/chunk-ledger.ts";
import { type Attempt, emptyDataDir, storageError } from "../volumes/attempt.ts";
import type { WrittenFiles } from "../volumes/manifest.ts";
import { type StorageCall, unboundedCall } from "../volumes/storage-call.ts";
import { SYNC_LIMIT_MS } from "../volumes/sync-tree.ts";
import { stopGraceMs, watchProgress } from "./progress-watchdog.ts";

export interface ExpandInput {
  readonly spec: DatasetSpec;
  readonly resolution: ResolvedObject;
  readonly parts: readonly ByteSpan[] | undefined;
  readonly client: StoreClient;
  readonly attempt: Attempt;
  readonly tuning: TransferTuning;
  readonly limits: ExtractLimits;
  readonly retry: RetryOptions;
  readonly signal: AbortSignal | undefined;
  readonly onBytes: (bytes: number) => void;
  /** The archive is streamed again from its start: the bytes counted so far are void. */
  readonly onRestart?: (() => void) | undefined;
  readonly errorContext: S3ErrorContext;
  /**
   * Bounds the calls on storage made outside the download's and the extraction's clocks (a
   * zip's free-space check and its removal): hung storage there left the dataset silent and
   * an interrupt unanswered (review, 2026-12-06). Absent: unbounded (tests).
   */
  readonly call?: StorageCall | undefined;
}

export interface Expanded {
  readonly files: WrittenFiles;
  /** How the archive's bytes were verified. */
  readonly verification: string;
  readonly refetchedBytes: number;
  /** Bytes written to the dataset directory. */
  readonly expandedBytes: number;
  /** Files written by the parallel writes (archive/parallel-writes.ts). */
  readonly writtenInParallel: number;
  /** What the user is told beside the result (a zip's names read as CP437). */
  readonly warnings: readonly string[];
}

/** Bytes of compressed data buffered between the download and the decompressor. */
const PIPE_BYTES = 16 * 1024 * 1024;
/**
 * Ranges held in memory ahead of the decompressor. Decompression, not the download, sets the
 * pace (gzip ~150 MB/s of input here, xz and bzip2 less): a 1 GiB .tar.gz took the same time
 * with 4 as with 8 (medians 7.2 and 7.4 s) and ~50 MiB less peak RSS (310-325 vs 350-380).
 */
const STREAM_RANGES = 4;
/**
 * The largest range a streamed archive asks for, whatever DSFETCH_RANGE_SIZE says: its ranges
 * are held in memory whole (4 in flight, those the pipe and the threads hold, the pool's), so
 * memory grew with the setting: 1Gi held ~8 GiB (review, 2026-12-06). Files and objects of a
 * folder stream to disk and take the setting as it is.
 */
export const MAX_STREAM_RANGE = 32 * 1024 * 1024;
/** Bytes the hasher or the extractor may hold beyond the pipe (their in-flight bounds). */
const READ_AHEAD_BYTES = 16 * 1024 * 1024;
/** The consumers of every streamed chunk, in the ledger. */
const HASHER = 0;
const EXTRACTOR = 1;
/**
 * An archive refused by the extractor with at most this much of the object still to come is
 * downloaded and verified to the end before the error is reported: a broken object in the
 * store (then other workers need not download it: volumes/failure-record.ts) is told from
 * bytes damaged on the way (INTEGRITY: run again). A truncated archive fails at its very end.
 */
const CONFIRM_REST_BYTES = 64 * 1024 * 1024;
/** Bytes read before choosing the decompressor (tar's magic is at offset 257). */
const SNIFF_BYTES = 512;

export async function expandArchive(input: ExpandInput): Promise<Expanded> {
  if (input.spec.archive === "zip") return expandZip(input);
  // Shared by both streams below: bytes fetched twice by the first count too.
  const stats = { refetchedBytes: 0, retries: 0 };
  try {
    return await expandTarStream(input, stats);
  } catch (error) {
    // The digests over a multipart layout inferred from its first and last parts did not
    // match: its middle parts may be of other sizes (fetch/parts.ts). A streamed archive's
    // bytes are gone: when the parts differ, the tree goes and the archive is streamed again
    // over them (a downloaded object is only hashed again: download-object.ts).
    const { parts } = input;
    if (!(error instanceof DigestMismatch) || parts === undefined) throw error;
    const learned = await relearnParts(input.client.getter, input.resolution, parts, input.retry);
    input.signal?.throwIfAborted();
    if (learned.kind === "same") throw error;
    if (learned.kind === "unknown") throw layoutUnchecked(error);
    const { dataDir } = input.attempt;
    await (input.call ?? unboundedCall)(`removing ${dataDir}`, (signal, progressed) =>
      emptyDataDir(input.attempt, progressed, signal),
    );
    // Counted from zero again: the progress went past 100% (review, 2026-12-07).
    input.onRestart?.();
    stats.refetchedBytes += input.resolution.bytes;
    return await expandTarStream({ ...input, parts: learned.spans }, stats);
  }
}

async function expandTarStream(
  input: ExpandInput,
  stats: { refetchedBytes: number; retries: number },
): Promise<Expanded> {
  const { resolution, spec } = input;
  const rangeSize = Math.min(input.tuning.rangeSize, MAX_STREAM_RANGE);
  const verifier = new StreamingVerifier(resolution, input.parts, (bytes) =>
    ledger.advance(HASHER, bytes),
  );
  // What either consumer may hold beyond the pipe: the hasher holds more when it hashes
  // small parts several at once (stream-hash-worker.ts; 32 MiB).
  const readAhead = Math.max(READ_AHEAD_BYTES, verifier.holdBytes);
  // Ranges in shared memory, read in place by both threads (hasher, extractor) and reused
  // once both are past them: the main thread copies nothing (util/chunk-ledger.ts).
  // Never larger than the object: a small archive does not get a whole range of memory.
  const buffers = new BufferPool(
    Math.max(1, Math.min(rangeSize, resolution.bytes)),
    STREAM_RANGES + Math.ceil((PIPE_BYTES + readAhead) / rangeSize) + 2,
    { shared: true },
  );
  const ledger = new ChunkLedger<Buffer>(2, (chunk) => buffers.give(chunk));
  const channel = new Channel(PIPE_BYTES);
  let pumped = 0;
  const abort = new AbortController();
  const signal =
    input.signal === undefined ? abort.signal : AbortSignal.any([abort.signal, input.signal]);

  // The pump reads every byte of the object in order and hashes it, whatever the consumer
  // does: bytes after the end of the tar (padding) are verified too.
  const pump = (async () => {
    try {
      for await (const chunk of orderedRanges({
        getter: input.client.getter,
        source: resolution,
        rangeSize,
        concurrency: Math.min(input.tuning.rangeConcurrency, STREAM_RANGES),
        signal,
        retry: input.retry,
        errorContext: input.errorContext,
        onBytes: input.onBytes,
        stats,
        buffers,
      })) {
        ledger.add(chunk);
        const behind = verifier.update(chunk);
        pumped += chunk.length;
        if (behind !== undefined) await behind;
        await channel.push(chunk);
      }
      channel.close();
    } catch (error) {
      channel.fail(error);
      throw error;
    }
  })();
  pump.catch(() => {});

  // Started now, it is ready when the first range is here (extract-in-worker.ts).
  let thread: ExtractThread | undefined = startExtractThread();
  try {
    const { head, rest } = await sniff(channel, SNIFF_BYTES);
    const chain = checkMagic(spec.archive ?? "tar", head, spec.name, resolution.key);
    const all = prepend(head, rest);
    const given = thread;
    thread = undefined;
    const result = await extractTarInWorker(
      all,
      {
        compression: chain.compression,
        destination: input.attempt.dataDir,
        limits: input.limits,
        dataset: spec.name,
        writes: input.tuning.fileWrites,
      },
      {
        signal,
        thread: given,
        onTaken: (bytes) => ledger.advance(EXTRACTOR, bytes),
        stallTimeoutMs: input.tuning.extractStallTimeoutMs,
      },
    );
    // The thread is gone: the rest of the object (a tar's padding) is only hashed.
    ledger.retire(EXTRACTOR);
    await pump;
    const verification = await verifier.verify(spec.name, spec.uri, resolution.bytes);
    return {
      files: result.files,
      verification,
      refetchedBytes: stats.refetchedBytes,
      expandedBytes: result.bytes,
      writtenInParallel: result.writtenInParallel,
      warnings: result.warnings,
    };
  } catch (error) {
    const against = verifier.hashedAgainst;
    if (
      confirmable(error) &&
      against !== undefined &&
      resolution.bytes - pumped <= CONFIRM_REST_BYTES
    ) {
      if (thread !== undefined) await stopExtractThread(thread);
      throw await confirmInStore(error, against);
    }
    abort.abort(error);
    if (thread !== undefined) await stopExtractThread(thread);
    // The extractor may have failed before reading (contents that do not match the
    // extension): a download waiting on the full channel would otherwise wait forever.
    channel.abandon();
    await pump.catch(() => {});
    verifier.dispose();
    throw error;
  }

  /**
   * Downloads and hashes the rest of the object (the extractor is gone: nothing is written),
   * then answers with the extractor's error marked as about the stored object, or with the
   * verification's (INTEGRITY: damaged on the way), or with the download's.
   */
  async function confirmInStore(error: DsfetchError, against: string): Promise<unknown> {
    ledger.retire(EXTRACTOR);
    channel.abandon();
    try {
      await pump;
      await verifier.verify(spec.name, spec.uri, resolution.bytes);
    } catch (other) {
      abort.abort(other);
      verifier.dispose();
      return other;
    }
    return aboutStoredObject(error, against);
  }
}

/** What a download's verification ("md5", "checksum:CRC32", …) compared the bytes with. */
function hashedAgainst(verification: string): string | undefined {
  if (verification === "md5" || verification === "multipart-md5") return "its ETag";
  if (verification.startsWith("checksum:")) return `its ${verification.slice(9)} checksum`;
  return undefined; // size-only: the bytes themselves were not checked
}

/** An extractor's refusal that verifying the object's bytes can confirm. */
function confirmable(error: unknown): error is DsfetchError {
  return (
    error instanceof DsfetchError &&
    (error.code === "ARCHIVE_INVALID" || error.code === "UNSAFE_PATH") &&
    !error.retryable
  );
}

/**
 * The same error, marked as about the stored object: its bytes were hashed and matched
 * `against` ("its ETag", "its CRC32 checksum").
 */
function aboutStoredObject(error: DsfetchError, against: string): DsfetchError {
  return new DsfetchError(error.code, error.message, {
    dataset: error.dataset,
    expected: error.expected,
    found: error.found,
    // Kept (a wrong extension, a truncated upload, an unsafe entry: each has its own advice),
    // with what the check showed: the object in the store is like this, not this download.
    // A decoder's "run again" is not for an object verified as it is in the store: it read
    // "damaged on the way: run again" beside "the object in the store is like this"
    // (exploratory tester, 2026-12-08).
    hint: `${storedHint(error.hint)} (the object's bytes match ${against}: the object in the store is like this)`,
    objectVerified: true,
    cause: error.cause,
  });
}

function storedHint(hint: string | undefined): string {
  if (hint === undefined) return "nothing was published";
  if (!hint.startsWith(DAMAGED_IN_STORE_OR_ON_THE_WAY)) return hint;
  return `nothing was published; the archive is damaged in the store: ${hint.slice(DAMAGED_IN_STORE_OR_ON_THE_WAY.length)}`;
}

async function expandZip(input: ExpandInput): Promise<Expanded> {
  const { resolution, spec } = input;
  // Beside the tree, never inside it: the dataset directory holds exactly the contents.
  const zipPath = join(input.attempt.dir, "archive.zip");
  await checkZipRoom(input);
  // Started now, so that its start-up overlaps the download.
  const thread = startZipThread();
  let download: Awaited<ReturnType<typeof downloadObject>>;
  try {
    // Under a clock, as a plain object's (stage-dataset.ts): the extraction thread's watchdog
    // starts only after the download, and storage that stopped taking the archive's writes
    // left the dataset silent, an interrupt unanswered, for as long as it stayed hung
    // (review, 2026-12-06).
    download = await watchProgress(
      (watchedSignal, progressed) =>
        downloadObject({
          getter: input.client.getter,
          source: resolution,
          destination: zipPath,
          parts: input.parts,
          rangeSize: input.tuning.rangeSize,
          concurrency: input.tuning.rangeConcurrency,
          signal: watchedSignal,
          retry: {
            ...input.retry,
            signal: watchedSignal,
            onRetry: (error, attempt, delayMs) => {
              progressed(0);
              input.retry.onRetry?.(error, attempt, delayMs);
            },
          },
          onBytes: (bytes) => {
            progressed(bytes);
            input.onBytes(bytes);
          },
          // Hashing that trails the download is progress; a sync or close that hangs is not.
          onHashed: () => progressed(0),
          errorContext: input.errorContext,
        }),
      {
        signal: input.signal,
        stallMs: input.tuning.extractStallTimeoutMs,
        graceMs: stopGraceMs(input.tuning.extractStallTimeoutMs),
        dataset: spec.name,
        writing: zipPath,
        // After the last byte: its last sync and close, bounded as a plain object's are.
        bytes: resolution.bytes,
        tailMs: SYNC_LIMIT_MS,
      },
    );
  } catch (error) {
    await thread.worker.terminate();
    throw error;
  }
  let result: Awaited<ReturnType<typeof extractZipInWorker>>;
  try {
    // Downloaded whole and verified first: what the extractor refuses is the stored object.
    result = await extractZipInWorker(
      {
        zipPath,
        destination: input.attempt.dataDir,
        limits: input.limits,
        dataset: spec.name,
        writes: input.tuning.fileWrites,
      },
      {
        signal: input.signal,
        stallTimeoutMs: input.tuning.extractStallTimeoutMs,
        thread,
      },
    ).catch((error: unknown) => {
      const against = hashedAgainst(download.verification);
      throw confirmable(error) && against !== undefined ? aboutStoredObject(error, against) : error;
    });
  } catch (error) {
    // After a stall or an interrupt the storage may be hung: the caller's bounded removal of
    // the whole attempt (stage-dataset.ts) takes the archive with it. Otherwise it goes now;
    // a failure to remove it is not the answer (the attempt's removal follows anyway).
    const stalled = error instanceof DsfetchError && error.code === "STALLED";
    if (!stalled && input.signal?.aborted !== true) {
      await storageCall(input)(`removing ${zipPath}`, () => rm(zipPath, { force: true })).catch(
        () => {},
      );
    }
    throw error;
  }
  await storageCall(input)(`removing ${zipPath}`, async () => {
    try {
      await rm(zipPath, { force: true });
    } catch (error) {
      throw storageError(error, zipPath);
    }
  });
  return {
    files: result.files,
    verification: download.verification,
    refetchedBytes: download.refetchedBytes,
    expandedBytes: result.bytes,
    writtenInParallel: result.writtenInParallel,
    warnings: result.warnings,
  };
}

function storageCall(input: ExpandInput): StorageCall {
  return input.call ?? unboundedCall;
}

/**
 * What a zip declares, read by ranges before its download (plan/zip-declared.ts): over the
 * bound on its expansion, or more than the device has free beside the zip itself, it fails
 * now, not after the download (found in review: a zip too big for shared storage was
 * downloaded there whole, then again into its ephemeral volume). The device's lack of room
 * is said as its being full, so shared storage falls back at once. A directory that cannot
 * be read so is left to the extraction, after the download has verified the bytes.
 */
async function checkZipRoom(input: ExpandInput): Promise<void> {
  const { resolution, spec } = input;
  if (resolution.kind !== "object") return;
  const declared = await declaredZipBytes(resolution, input.client.getter, {
    maxEntries: input.limits.maxEntries,
    errorContext: input.errorContext,
    retry: input.retry,
    signal: input.signal,
  }).catch(() => {
    input.signal?.throwIfAborted();
    // Any error here (the object replaced: 412, a range damaged on the way) is for the
    // download and the verified extraction to report.
    return undefined;
  });
  if (declared === undefined) return;
  if (declared.bytes > input.limits.maxBytes) {
    const { limit, hint } = expandedLimitText(input.limits);
    throw new DsfetchError(
      "NO_SPACE",
      `${spec.name}: the zip archive's entries declare ${formatBytes(declared.bytes)} (${declared.bytes} bytes), more than ${limit}`,
      { dataset: spec.name, hint: `nothing was downloaded: ${hint}` },
    );
  }
  const needed = resolution.bytes + declared.bytes;
  const free = await storageCall(input)(`reading the free space of ${input.attempt.dir}`, () =>
    statfs(input.attempt.dir).then(
      (fs) => fs.bavail * fs.bsize,
      () => undefined,
    ),
  );
  if (free === undefined || needed <= free) return;
  throw new DsfetchError(
    "NO_SPACE",
    `${spec.name}: the zip archive (${formatBytes(resolution.bytes)}) and what its entries declare (${formatBytes(declared.bytes)}) need ${formatBytes(needed)} (${needed} bytes) but the device holding ${input.attempt.dir} has ${formatBytes(free)} (${free} bytes) free`,
    {
      dataset: spec.name,
      hint: "free space on that disk (on shared storage: dsfetch prune), or give the dataset a larger volume",
      cause: Object.assign(
        new Error("ENOSPC: no space left on device (the zip's declared sizes)"),
        {
          code: "ENOSPC",
        },
      ),
    },
  );
}

/** Reads at least `bytes` (or everything, if shorter) from the start of a stream. */
async function sniff(
  source: AsyncIterable<Buffer>,
  bytes: number,
): Promise<{ head: Buffer; rest: AsyncIterator<Buffer> }> {
  const iterator = source[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < bytes) {
    const next = await iterator.next();
    if (next.done === true) break;
    // Not a copy: chunks are reused only when the extractor reports them done (ledger).
    chunks.push(next.value);
    length += next.value.length;
  }
  const head = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
  return { head, rest: iterator };
}

async function* prepend(head: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  try {
    if (head.length > 0) yield head;
    for (;;) {
      const next = await rest.next();
      if (next.done === true) return;
      yield next.value;
    }
  } finally {
    // A consumer that stops early must release the channel, or the pump would wait forever.
    await rest.return?.();
  }
}
