/**
 * One object → one new file, by parallel ranged GETs written with positional writes. Every
 * range is pinned to the resolved object (If-Match on its ETag, and its versionId), so an
 * object overwritten mid-download answers 412 and is never mixed. A failed range resumes
 * from the bytes already written. Bytes are verified end to end against the ETag (MD5 or
 * multipart MD5) and always against the size.
 */
import { createHash } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import { DsfetchError } from "../errors.ts";
import { storageError } from "../volumes/attempt.ts";
import { etagKind, multipartEtag } from "./etag.ts";
import type { ObjectGetter } from "./object-get.ts";
import { type ByteSpan, OrderedHasher } from "./ordered-hasher.ts";
import { fetchSpan, type RangeSink, splitSpans } from "./range-fetch.ts";
import type { RetryOptions } from "./retry.ts";
import type { S3ErrorContext } from "./s3-errors.ts";
import { WORKER_HASH_THRESHOLD, WorkerHasher } from "./worker-hasher.ts";

export interface ObjectSource {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  /** Lowercase, unquoted. */
  readonly etag: string;
  readonly bytes: number;
  /** Server-side encryption algorithm reported by HEAD, if any. */
  readonly encryption?: string | undefined;
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
  readonly errorContext: S3ErrorContext;
}

export interface DownloadedObject {
  readonly bytes: number;
  /** "md5", "multipart-md5", or "size-only (<reason>)". */
  readonly verification: string;
  /** Hex MD5 of the whole file, when it was computed (single-part objects). */
  readonly md5: string | undefined;
  /** Bytes received more than once (after a failed attempt). */
  readonly refetchedBytes: number;
  readonly retries: number;
}

export const DEFAULT_RANGE_SIZE = 8 * 1024 * 1024;
export const DEFAULT_OBJECT_CONCURRENCY = 8;
/** Received bytes are written in batches of at least this much (one writev per batch). */
const WRITE_BATCH = 1024 * 1024;

export async function downloadObject(options: DownloadObjectOptions): Promise<DownloadedObject> {
  const { source } = options;
  const plan = verificationPlan(source, options.parts);
  const file = await open(options.destination, "wx+", 0o644);
  try {
    const hasher =
      plan.spans === undefined
        ? undefined
        : source.bytes >= WORKER_HASH_THRESHOLD
          ? new WorkerHasher(options.destination, plan.spans)
          : new OrderedHasher(file, plan.spans);
    let transfer: TransferStats;
    try {
      transfer = await transferRanges(file, options, hasher);
    } catch (error) {
      if (hasher instanceof WorkerHasher) hasher.dispose();
      throw error;
    }
    const digests = hasher === undefined ? undefined : await hasher.finish(source.bytes);
    const verification = checkDigests(plan, digests, options.errorContext.dataset, source);
    return {
      ...transfer,
      bytes: source.bytes,
      verification,
      md5: plan.kind === "md5" ? digests?.[0]?.toString("hex") : undefined,
    };
  } finally {
    await file.close();
  }
}

interface VerificationPlan {
  kind: "md5" | "multipart-md5" | "size-only";
  spans: ByteSpan[] | undefined;
  reason?: string;
}

function verificationPlan(
  source: ObjectSource,
  parts: readonly ByteSpan[] | undefined,
): VerificationPlan {
  const kind = etagKind(source.etag, source.encryption);
  if (kind.kind === "md5") return { kind: "md5", spans: [{ start: 0, end: source.bytes }] };
  if (kind.kind === "multipart") {
    if (parts !== undefined && parts.length === kind.parts)
      return { kind: "multipart-md5", spans: [...parts] };
    return {
      kind: "size-only",
      spans: undefined,
      reason: "the multipart part boundaries could not be learned",
    };
  }
  return { kind: "size-only", spans: undefined, reason: kind.reason };
}

function checkDigests(
  plan: VerificationPlan,
  digests: Buffer[] | undefined,
  dataset: string,
  source: ObjectSource,
): string {
  if (plan.kind === "size-only") return `size-only (${plan.reason})`;
  const list = digests ?? [];
  // An empty object has no bytes to feed the follower: its MD5 is that of nothing.
  const found =
    plan.kind === "md5"
      ? (list[0] ?? createHash("md5").digest()).toString("hex")
      : multipartEtag(list);
  if (found !== source.etag) {
    throw new DsfetchError(
      "INTEGRITY",
      `${dataset}: the bytes received for s3://${source.bucket}/${source.key} do not match its ETag: expected ${source.etag}, computed ${found}`,
      {
        dataset,
        expected: source.etag,
        found,
        hint: "the data was corrupted in transit or by the store; nothing was published; run again",
        retryable: false,
      },
    );
  }
  return plan.kind;
}

interface TransferStats {
  refetchedBytes: number;
  retries: number;
}

async function transferRanges(
  file: FileHandle,
  options: DownloadObjectOptions,
  hasher: OrderedHasher | WorkerHasher | undefined,
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
  const abort = new AbortController();
  const signal =
    options.signal === undefined ? abort.signal : AbortSignal.any([abort.signal, options.signal]);
  const context = {
    getter: options.getter,
    source,
    signal,
    retry: options.retry,
    errorContext: options.errorContext,
    stats,
  };

  /** Positional writes in batches of >= WRITE_BATCH (one writev each). */
  const fileSink = (index: number, span: ByteSpan): RangeSink => {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const batch = pending;
      const bytes = pendingBytes;
      pending = [];
      pendingBytes = 0;
      try {
        await file.writev(batch, span.start + (written[index] ?? 0));
      } catch (error) {
        // A full or failing disk is not the store's fault: never retried, reported as storage.
        throw storageError(error, options.destination);
      }
      written[index] = (written[index] ?? 0) + bytes;
      options.onBytes?.(bytes);
      hasher?.advanceTo(contiguousEnd());
    };
    return {
      kept: () => written[index] ?? 0,
      push: (chunk) => {
        pending.push(chunk);
        pendingBytes += chunk.length;
        return pendingBytes >= WRITE_BATCH ? flush() : undefined;
      },
      flush,
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
  const failed = results.find((result) => result.status === "rejected");
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  if (options.signal?.aborted) throw options.signal.reason;
  return stats;
}
