import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DsfetchError } from "../errors.ts";
import { syncStorageCallsAhead } from "../util/main-thread-beat.ts";
import { SlowCreates } from "../util/slow-creates.ts";
import { Turns } from "../util/turns.ts";
import type { WriteMode } from "../util/write-mode.ts";
import { writeNewFileTimed } from "../util/write-piece.ts";
import { storageError } from "../volumes/attempt.ts";
import { type ChecksumFields, chooseChecksum } from "./checksum/index.ts";
import type { StoreClient } from "./client.ts";
import { dirMaker } from "./dir-maker.ts";
import { downloadObject } from "./download-object.ts";
import { etagKind } from "./etag.ts";
import { type ListingFiles, VerifiedObjects } from "./kept-objects.ts";
import { md5Soon } from "./md5-batch.ts";
import { learnParts } from "./parts.ts";
import type { RangeAnswer } from "./range-fetch.ts";
import {
  headObjectAt,
  type ListedObject,
  type ResolvedObject,
  type ResolvedPrefix,
} from "./resolve.ts";
import { type RetryOptions, withRetry } from "./retry.ts";
import {
  checksumModeRefusal,
  checksumModeRefused,
  classifyS3Error,
  rememberChecksumModeRefused,
  type S3ErrorContext,
} from "./s3-errors.ts";
import { fileDirectoryConflict, unsafeRelativePath } from "./safe-key.ts";
import {
  checkDigests,
  createDigest,
  etagPartCount,
  fileDigest,
  partsToLearn,
  planVerification,
} from "./verification.ts";

export interface DownloadPrefixOptions {
  readonly client: StoreClient;
  readonly resolution: ResolvedPrefix;
  /** An existing, empty directory. */
  readonly destination: string;
  readonly concurrency?: number;
  /** Range size for objects too large for one GET. */
  readonly rangeSize?: number;
  readonly signal?: AbortSignal | undefined;
  readonly retry?: RetryOptions;
  readonly onBytes?: (bytes: number) => void;
  readonly onObject?: () => void;
  /** Progress that is neither bytes nor objects: a large object's file being hashed. */
  readonly onProgress?: () => void;
  readonly errorContext: S3ErrorContext;
  /** How the objects' files are written (util/write-mode.ts); default "auto". */
  readonly writes?: WriteMode | undefined;
  /**
   * Where the objects written and verified are recorded, by their index in the listing: what
   * a download that failed because the folder changed leaves to the next attempt
   * (kept-objects.ts). Objects recorded in it already are in `destination` already (kept
   * from the failed attempt: moveKept), and are not fetched.
   */
  readonly verified?: VerifiedObjects | undefined;
}

/** What a large object's download reads of its listing entry (no path: see fetchLarge). */
type AsListed = Pick<ListedObject, "key" | "bytes" | "etag">;

export interface DownloadedPrefix {
  readonly bytes: number;
  /** The manifest's entries, in listing order. */
  readonly files: ListingFiles;
  /** How many objects were verified each way: { "md5": 1990, "size-only (…)": 10 }. */
  readonly verification: Readonly<Record<string, number>>;
  readonly refetchedBytes: number;
  readonly retries: number;
  /** Objects written through the thread pool, several at once (util/slow-creates.ts). */
  readonly writtenInParallel: number;
}

/**
 * Objects in flight. Small objects are bound by round trips, not bytes: with real S3's
 * 10-50 ms per request, 32 in flight fetched 20,000 objects of 16 KiB in 23 s through a
 * proxy adding 20 ms per request, 128 in 12.7 s (s5cmd, 256 workers: 15-19 s); on the local
 * store, no difference beyond noise.
 */
export const DEFAULT_PREFIX_CONCURRENCY = 128;
/**
 * Large objects in flight at once, whatever the concurrency: each holds up to 4 ranges and
 * their write batches, and bytes, not round trips, bound them (the memory of 32 such objects
 * before small objects had 128 in flight).
 */
export const LARGE_OBJECTS_IN_FLIGHT = 32;
/** Objects up to this size are fetched with one GET into memory. */
const SMALL_OBJECT = 1024 * 1024;
/**
 * Memory for the bodies of small objects in flight (each in a buffer of its size class): many
 * tiny objects at once, but no more than 32 of 1 MiB (128 of them held 256 MiB of peak RSS).
 */
export const SMALL_BYTES_IN_FLIGHT = 32 * SMALL_OBJECT;
/** The smallest body buffer: most small objects of datasets are a few KiB to a few 100 KiB. */
const MIN_SCRATCH = 16 * 1024;

/** Rejects keys that would land outside the dataset directory, before any download. */
export function checkPrefixKeys(resolution: ResolvedPrefix, dataset: string): void {
  for (const object of resolution.objects) {
    const problem = unsafeRelativePath(object.relativePath);
    if (problem !== undefined) {
      throw new DsfetchError(
        "UNSAFE_PATH",
        `${dataset}: the key ${JSON.stringify(object.key)} cannot be stored under the dataset directory: ${problem}`,
        { dataset, hint: "rename or remove that object in the store; nothing was downloaded" },
      );
    }
  }
  const conflict = fileDirectoryConflict(resolution.objects.map((object) => object.relativePath));
  if (conflict !== undefined) {
    throw new DsfetchError(
      "UNSAFE_PATH",
      `${dataset}: the keys ${JSON.stringify(resolution.prefix + conflict[0])} and ${JSON.stringify(resolution.prefix + conflict[1])} would make "${conflict[0]}" both a file and a directory`,
      { dataset, hint: "rename one of them in the store; nothing was downloaded" },
    );
  }
}

export async function downloadPrefix(options: DownloadPrefixOptions): Promise<DownloadedPrefix> {
  const { resolution } = options;
  checkPrefixKeys(resolution, options.errorContext.dataset);
  // Directories and (while creates are fast) files are made with synchronous calls.
  syncStorageCallsAhead();
  // One file at a time while creates are fast; several at once on network storage.
  const creates = SlowCreates.forMode(options.writes);
  // Directories through the pool too once creates are slow (dir-maker.ts).
  const ensureDir = dirMaker(creates, options.destination);
  const verified = options.verified ?? new VerifiedObjects(resolution.objects.length);
  if (verified.length !== resolution.objects.length) {
    throw new DsfetchError(
      "INTERNAL",
      `${options.errorContext.dataset}: a record of ${verified.length} objects for a listing of ${resolution.objects.length}`,
      { dataset: options.errorContext.dataset, hint: "this is a bug in dsfetch; please report it" },
    );
  }
  const verification: Record<string, number> = {};
  const totals = { bytes: 0, refetchedBytes: 0, retries: 0, opaqueEtags: false };
  const abort = new AbortController();
  const signal =
    options.signal === undefined ? abort.signal : AbortSignal.any([abort.signal, options.signal]);
  const retry: RetryOptions = {
    ...options.retry,
    signal,
    onRetry: (error, attempt, delay) => {
      totals.retries += 1;
      options.retry?.onRetry?.(error, attempt, delay);
    },
  };

  const fetchOne = async (object: ListedObject, index: number): Promise<void> => {
    try {
      await fetchListed(object, index);
    } catch (error) {
      // Listed, then gone: deleted while the folder was fetched. The folder changed, as when
      // an object's size or ETag did (restarted on the new listing); it was NOT_FOUND, exit 3,
      // with a hint to list the prefix (review, 2026-12-05). In a versioned bucket the
      // deletion is a delete marker (DELETE_MARKER, about pinning a version: not this case).
      if (
        !(error instanceof DsfetchError) ||
        (error.code !== "NOT_FOUND" && error.code !== "DELETE_MARKER")
      ) {
        throw error;
      }
      throw new DsfetchError(
        "OBJECT_CHANGED",
        `${options.errorContext.dataset}: s3://${resolution.bucket}/${object.key} was listed but is gone now (deleted while the folder was fetched)`,
        {
          dataset: options.errorContext.dataset,
          hint: "the folder changed while it was being fetched; run again",
          cause: error,
        },
      );
    }
  };

  const largeTurns = new Turns(LARGE_OBJECTS_IN_FLIGHT);
  const smallBytes = new Turns(SMALL_BYTES_IN_FLIGHT);
  /**
   * What the listing does not say: an object's encryption (an SSE-KMS or SSE-C ETag is no
   * MD5: on AWS every object of a bucket encrypted with KMS by default failed INTEGRITY, run
   * after run). A small object's GET answer says it; a large one is downloaded as the listing
   * shows it, and its first ranged answer says it: encrypted so, it stops there and is asked
   * about (HEAD), then downloaded verified by what HEAD offers (an additional checksum, else
   * its size). A store that says so only on HEAD: asked once its bytes did not match its
   * ETag. Once one object of the folder showed such encryption, every later large one is
   * asked about first (a HEAD each for all of them slowed folders of 1-8 MiB objects by a
   * round trip each: review).
   */
  const headOf = async (object: AsListed, ctx: S3ErrorContext) => {
    const head = await headObjectAt(
      {
        bucket: resolution.bucket,
        key: object.key,
        versionId: undefined,
        dataset: ctx.dataset,
        uri: ctx.uri,
      },
      options.client,
      ctx,
      retry,
    );
    // A listing without ETags (object.etag ""): only the size can be compared.
    if ((object.etag !== "" && head.etag !== object.etag) || head.bytes !== object.bytes) {
      throw changedSinceListing(ctx, object, head);
    }
    return head;
  };
  const downloadLarge = async (
    object: AsListed,
    path: string,
    ctx: S3ErrorContext,
    given: ResolvedObject | undefined,
    written?: { bytes: number },
  ) => {
    let head = given;
    const sourceOf = (from: ResolvedObject | undefined) => ({
      bucket: resolution.bucket,
      key: object.key,
      versionId: undefined,
      etag: object.etag,
      bytes: object.bytes,
      encryption: from?.encryption,
      checksum: from?.checksum,
      checksumRejected: from?.checksumRejected,
      lastModified: from?.lastModified,
    });
    let source = sourceOf(head);
    const partCount = partsToLearn(source);
    const parts =
      partCount === undefined
        ? undefined
        : await learnParts(options.client.getter, source, partCount, retry, ctx);
    if (head === undefined && planVerification(source, parts).algorithm === undefined) {
      // The listing's ETag cannot prove the bytes (its part boundaries could not be learned:
      // a store refusing HEAD with PartNumber; or no MD5 at all): the object's own HEAD may
      // hold a full-object checksum, which needs no boundaries. Review, 2026-12-06: it was
      // never asked, and such objects were verified size-only, "the store reported no
      // additional checksum". A composite one needs the boundaries too: not asked again.
      head = await headOf(object, ctx);
      if (etagKind(object.etag, head.encryption).kind === "opaque") totals.opaqueEtags = true;
      source = sourceOf(head);
    }
    // Planned from the listing alone: the first answer's encryption header says whether the
    // ETag is an MD5 at all (review, 2026-12-06: an SSE-KMS object was downloaded whole, failed
    // INTEGRITY, and only then was asked about and downloaded again).
    const listedEtag = etagKind(object.etag).kind;
    const onAnswer =
      head !== undefined || listedEtag === "opaque"
        ? undefined
        : (answer: RangeAnswer) => {
            if (etagKind(object.etag, answer.encryption).kind === "opaque") {
              throw new EtagNotMd5(ctx, answer.encryption);
            }
          };
    return downloadObject({
      getter: options.client.getter,
      source,
      destination: path,
      parts,
      rangeSize: options.rangeSize,
      concurrency: 4,
      signal,
      retry,
      onBytes: (bytes) => {
        if (written !== undefined) written.bytes += bytes;
        options.onBytes?.(bytes);
      },
      onHashed: options.onProgress,
      onAnswer,
      errorContext: ctx,
    });
  };
  const fetchLarge = async (object: ListedObject, path: string, ctx: S3ErrorContext) => {
    if (object.etag === "") {
      // A store whose listings carry no ETags: the HEAD's pins the download's ranges to one
      // version (with none at all, they could mix two versions of an object overwritten
      // meanwhile) and verifies its bytes (review, 2026-12-06).
      const head = await headOf(object, ctx);
      // A copy with the HEAD's ETag: without the listing's relativePath (a getter, which a
      // spread leaves out: resolve.ts), hence AsListed, which has none to read.
      return downloadLarge({ ...object, etag: head.etag }, path, ctx, head);
    }
    if (totals.opaqueEtags) return downloadLarge(object, path, ctx, await headOf(object, ctx));
    const written = { bytes: 0 };
    try {
      return await downloadLarge(object, path, ctx, undefined, written);
    } catch (error) {
      if (!(error instanceof DsfetchError)) throw error;
      // Stopped at its first answer (encrypted so that its ETag is no MD5): nothing of its
      // body was read, every range's answer says the same. Otherwise a store that says so
      // only on HEAD: downloaded whole, its bytes did not match the ETag.
      const early = error instanceof EtagNotMd5;
      if (!early && error.code !== "INTEGRITY") throw error;
      const head = await headOf(object, ctx);
      if (!early && etagKind(object.etag, head.encryption).kind !== "opaque") throw error;
      totals.opaqueEtags = true;
      await rm(path, { force: true });
      const again = await downloadLarge(object, path, ctx, head);
      const refetched = early ? written.bytes : object.bytes;
      return { ...again, refetchedBytes: again.refetchedBytes + refetched };
    }
  };

  const fetchListed = async (object: ListedObject, index: number): Promise<void> => {
    const path = join(options.destination, object.relativePath);
    await ensureDir(dirname(path));
    const ctx: S3ErrorContext = {
      ...options.errorContext,
      uri: `s3://${resolution.bucket}/${object.key}`,
    };
    let how: string;
    let digest: string | undefined;
    if (object.bytes <= SMALL_OBJECT) {
      const scratch = scratchSize(object.bytes);
      await smallBytes.acquire(scratch);
      try {
        signal.throwIfAborted();
        const result = await fetchSmall(options, object, path, ctx, retry, totals, creates);
        how = result.verification;
        digest = result.digest;
      } finally {
        smallBytes.release(scratch);
      }
    } else {
      // Under one of the LARGE_OBJECTS_IN_FLIGHT turns (the worker took it).
      const result = await fetchLarge(object, path, ctx);
      totals.refetchedBytes += result.refetchedBytes;
      how = result.verification;
      digest = result.digest;
    }
    totals.bytes += object.bytes;
    verification[how] = (verification[how] ?? 0) + 1;
    verified.record(index, object, digest, how);
    options.onObject?.();
  };

  // Small and large objects in two queues, each in listing order (once creates are slow, the
  // rest across directories in turn). A worker takes a large object only when one of the
  // LARGE_OBJECTS_IN_FLIGHT turns is free, else a small one, and waits for a large turn only
  // when no small object is left: waiting with a large object in hand, most of the workers
  // held back the small ones of a folder of mixed sizes (review).
  const small: number[] = [];
  const large: number[] = [];
  resolution.objects.forEach((object, index) => {
    // Kept from the attempt before (kept-objects.ts): in place, verified, counted as such.
    if (verified.has(index)) {
      const how = verified.methodOf(index) ?? "unknown";
      verification[how] = (verification[how] ?? 0) + 1;
      totals.bytes += object.bytes;
      return;
    }
    (object.bytes <= SMALL_OBJECT ? small : large).push(index);
  });
  const takeSmall = queueOf(small);
  const takeLarge = queueOf(large);
  const worker = async (): Promise<void> => {
    while (!signal.aborted) {
      let index: number | undefined;
      let largeTurn = false;
      if (takeLarge.left() > 0 && largeTurns.tryAcquire()) {
        largeTurn = true;
        index = takeLarge();
      } else {
        index = takeSmall();
        if (index === undefined && takeLarge.left() > 0) {
          await largeTurns.acquire();
          largeTurn = true;
          index = takeLarge();
        }
      }
      try {
        if (index === undefined || signal.aborted) return;
        await fetchOne(resolution.objects[index] as ListedObject, index);
      } catch (error) {
        abort.abort(error);
        throw error;
      } finally {
        if (largeTurn) largeTurns.release();
      }
    }
  };
  /** The indices of `indices`, in order, or across directories once creates are slow. */
  function queueOf(indices: number[]): { (): number | undefined; left(): number } {
    let order: number[] | undefined;
    let next = 0;
    const take = (): number | undefined => {
      if (next >= indices.length) return undefined;
      if (order === undefined && creates.slow) {
        const objects = indices.map((index) => resolution.objects[index] as ListedObject);
        order = acrossDirectories(objects, next).map((at) =>
          at < 0 ? -1 : (indices[at] as number),
        );
      }
      const index = order === undefined ? indices[next] : order[next];
      next++;
      return index;
    };
    return Object.assign(take, { left: () => indices.length - next });
  }
  const count = Math.max(
    1,
    Math.min(options.concurrency ?? DEFAULT_PREFIX_CONCURRENCY, small.length + large.length),
  );
  const results = await Promise.allSettled(Array.from({ length: count }, worker));
  const failed = results.find((result) => result.status === "rejected");
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  if (options.signal?.aborted) throw options.signal.reason;
  return {
    bytes: totals.bytes,
    // Every object recorded now (each worker ended only once the queues were empty); the
    // entries are made from the listing as the manifest is written (kept-objects.ts).
    files: verified.filesOf(resolution),
    verification,
    refetchedBytes: totals.refetchedBytes,
    retries: totals.retries,
    writtenInParallel: creates.parallelFiles,
  };
}

/**
 * The indices from `from` on, taking one object of each directory in turn (directories in
 * order of first appearance). The kernel serialises creates within one directory (its lock,
 * on every filesystem): on network storage, objects fetched together from one directory
 * wait for each other's round trips, those of different directories do not. Measured on
 * bench/slowfs (1 ms per metadata request), 20,000 objects in 200 directories: 75.7 s in
 * listing order.
 */
export function acrossDirectories(objects: readonly ListedObject[], from: number): number[] {
  const byDirectory = new Map<string, number[]>();
  for (let index = from; index < objects.length; index++) {
    const path = (objects[index] as ListedObject).relativePath;
    const dir = path.slice(0, Math.max(0, path.lastIndexOf("/")));
    const indices = byDirectory.get(dir);
    if (indices === undefined) byDirectory.set(dir, [index]);
    else indices.push(index);
  }
  const order: number[] = new Array(from).fill(-1);
  // Exhausted directories drop out, so that one large directory costs one pass, not one per round.
  let queues = [...byDirectory.values()];
  for (let round = 0; queues.length > 0; round++) {
    for (const queue of queues) order.push(queue[round] as number);
    queues = queues.filter((queue) => queue.length > round + 1);
  }
  return order;
}

async function fetchSmall(
  options: DownloadPrefixOptions,
  object: ListedObject,
  path: string,
  ctx: S3ErrorContext,
  retry: RetryOptions,
  totals: { refetchedBytes: number; opaqueEtags: boolean },
  creates: SlowCreates,
): Promise<{ verification: string; digest: string | undefined }> {
  let checksums: ChecksumFields = {};
  let encryption: string | undefined;
  // The body lands in a reused buffer: bodies arrive as views of the connection's read
  // buffer (http1.ts), and a fresh buffer per object would be garbage by the thousand.
  const size = scratchSize(object.bytes);
  const scratch = takeScratch(size);
  const { getter } = options.client;
  try {
    const get = (checksumMode: boolean) =>
      withRetry(async () => {
        let received = 0;
        try {
          const response = await getter.get({
            bucket: options.resolution.bucket,
            key: object.key,
            ifMatch: object.etag === "" ? undefined : object.etag,
            checksumMode,
            signal: retry.signal,
          });
          checksums = response.checksums;
          // What the listing does not say: an SSE-KMS or SSE-C object's ETag is no MD5 (on AWS
          // every object of a bucket encrypted with KMS by default; each failed INTEGRITY).
          encryption = response.encryption;
          if (etagKind(object.etag, encryption).kind === "opaque") totals.opaqueEtags = true;
          const changed = () => changedSinceListing(ctx, object);
          if (!Number.isNaN(response.contentLength) && response.contentLength !== object.bytes) {
            response.discard();
            throw changed();
          }
          await response.readBody((chunk) => {
            if (received + chunk.length > object.bytes) throw changed();
            received += chunk.copy(scratch, received);
          });
          if (received !== object.bytes) {
            // A body that ends at the connection's close (no Content-Length) and came short
            // was cut, not changed: this GET is pinned to the listed ETag (If-Match), so a
            // changed object would have been a 412 (and one of a store that ignores If-Match
            // names another ETag). Retried as the cut it is; it restarted the whole folder on a
            // new listing (interop review, 2026-12-06; fixed 2026-12-07).
            const sameEtag = response.etag === undefined || response.etag === object.etag;
            if (Number.isNaN(response.contentLength) && object.etag !== "" && sameEtag) {
              const cut = new Error(
                `connection closed after ${received} of ${object.bytes} bytes of ${object.key}`,
              ) as NodeJS.ErrnoException;
              cut.code = "ECONNRESET";
              throw cut;
            }
            throw changed();
          }
          return scratch.subarray(0, received);
        } catch (error) {
          totals.refetchedBytes += received;
          throw classifyS3Error(error, ctx);
        }
      }, retry);
    // ChecksumMode asks for the stored S3 additional checksums (SPEC §4). A store that does
    // not know the header refuses the GET (Backblaze B2: 400 InvalidArgument "Unsupported
    // header 'x-amz-checksum-mode'", vatesfr/xen-orchestra#8358; or 501): asked again without
    // it, as the HEAD of an object is (resolve.ts), and once that answers, the store's later
    // GETs go without it. Interop review, 2026-12-06: every folder with an object of at most
    // 1 MiB failed there (exit 6).
    let refused = checksumModeRefused(getter);
    let body: Buffer;
    if (refused !== undefined) body = await get(false);
    else {
      try {
        body = await get(true);
      } catch (error) {
        const reason = checksumModeRefusal(error);
        if (reason === undefined) throw error;
        // The plain GET's own failure, if any, is the answer (a 403 or 400 of its own).
        body = await get(false);
        refused = reason;
        // Remembered for the store only when the answer says it does not know the header.
        rememberChecksumModeRefused(getter, reason, error);
      }
    }
    // Awaited here: the scratch buffer goes back only once its bytes are written.
    return await verifyAndWrite(
      options,
      object,
      path,
      ctx,
      { checksums, encryption, checksumRefused: refused },
      body,
      creates,
      retry.signal,
    );
  } finally {
    giveScratch(scratch);
  }
}

/**
 * A large object's first answer names an encryption (SSE-KMS, SSE-C) that makes its ETag no
 * MD5: its download stops before any body is read, and starts again planned from its HEAD
 * (fetchLarge). Caught there; never reaches the user.
 */
class EtagNotMd5 extends DsfetchError {
  constructor(ctx: S3ErrorContext, encryption: string | undefined) {
    super(
      "INTERNAL",
      `${ctx.dataset}: ${ctx.uri} is encrypted with ${encryption}, so its ETag is not an MD5: expected to be planned again from its HEAD`,
      {
        dataset: ctx.dataset,
        hint: "this is a bug in dsfetch; please report it",
        retryable: false,
      },
    );
  }
}

/** An object that is not as the listing gave it (its size, or its ETag). */
function changedSinceListing(
  ctx: S3ErrorContext,
  object: AsListed,
  found?: { etag: string; bytes: number },
): DsfetchError {
  const what =
    found === undefined || found.bytes !== object.bytes
      ? `is not the size the listing gave (${object.bytes} bytes)`
      : `has another ETag than the listing gave (${object.etag}, now ${found.etag})`;
  return new DsfetchError("OBJECT_CHANGED", `${ctx.dataset}: ${ctx.uri} ${what}`, {
    dataset: ctx.dataset,
    hint: "the folder changed while it was being fetched; run again",
  });
}

/** The buffer size for a small object's body: a power of two, MIN_SCRATCH to SMALL_OBJECT. */
export function scratchSize(bytes: number): number {
  let size = MIN_SCRATCH;
  while (size < bytes) size *= 2;
  return size;
}

/**
 * Bodies of small objects, reused by size: bodies arrive as views of a connection's read
 * buffer, and a fresh buffer per object is external memory by the thousand (V8 collects
 * after every ~64 MiB of it). Kept up to SMALL_BYTES_IN_FLIGHT in all.
 */
const scratchBySize = new Map<number, Buffer[]>();
let scratchKept = 0;

function takeScratch(size: number): Buffer {
  const kept = scratchBySize.get(size)?.pop();
  if (kept === undefined) return Buffer.allocUnsafe(size);
  scratchKept -= size;
  return kept;
}

function giveScratch(buffer: Buffer): void {
  // Buffers of other sizes make way (a folder of 1 MiB objects would otherwise keep 32 of
  // them for good, and every smaller body afterwards be allocated anew: review).
  for (const [size, kept] of scratchBySize) {
    if (scratchKept + buffer.length <= SMALL_BYTES_IN_FLIGHT) break;
    if (size === buffer.length) continue;
    while (kept.length > 0 && scratchKept + buffer.length > SMALL_BYTES_IN_FLIGHT) {
      kept.pop();
      scratchKept -= size;
    }
  }
  if (scratchKept + buffer.length > SMALL_BYTES_IN_FLIGHT) return;
  scratchKept += buffer.length;
  const kept = scratchBySize.get(buffer.length);
  if (kept === undefined) scratchBySize.set(buffer.length, [buffer]);
  else kept.push(buffer);
}

async function verifyAndWrite(
  options: DownloadPrefixOptions,
  object: ListedObject,
  path: string,
  ctx: S3ErrorContext,
  answered: {
    checksums: ChecksumFields;
    encryption: string | undefined;
    /** Why the GET went without ChecksumMode (the store refused it), if it did. */
    checksumRefused: string | undefined;
  },
  body: Buffer,
  creates: SlowCreates,
  signal: AbortSignal | undefined,
): Promise<{ verification: string; digest: string | undefined }> {
  // A whole-object GET carries the stored checksum (if any): prefer it, like HEAD's (SPEC §4).
  // Without ChecksumMode, none came: the verification says why, as after a HEAD (resolve.ts).
  const { checksum, rejected } =
    answered.checksumRefused === undefined
      ? chooseChecksum(answered.checksums, etagPartCount(object.etag))
      : { checksum: undefined, rejected: [answered.checksumRefused] };
  const plan = planVerification(
    {
      etag: object.etag,
      bytes: object.bytes,
      encryption: answered.encryption,
      checksum,
      checksumRejected: rejected,
    },
    undefined,
  );
  const digests: Buffer[] = [];
  if (plan.algorithm !== undefined && plan.spans?.length === 1) {
    if (plan.algorithm === "MD5") digests.push(await md5Soon(body));
    else {
      const hash = createDigest(plan.algorithm);
      hash.update(body);
      digests.push(hash.digest());
    }
    checkDigests(plan, digests, ctx.dataset, ctx.uri);
  }
  const verification = plan.method;
  try {
    // Read-only from the start: publishing needs no chmod per file (volumes/permissions.ts).
    await writeNewFileTimed(path, body, 0o444, creates, signal);
  } catch (error) {
    // Stopped because another object failed: that failure is the answer, unchanged.
    if (signal?.aborted === true && error === signal.reason) throw error;
    throw storageError(error, path);
  }
  options.onBytes?.(body.length);
  return { verification, digest: fileDigest(plan, digests) };
}
