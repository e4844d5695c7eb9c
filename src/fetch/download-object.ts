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
import { etagKind, multipartEtag } from "./etag.ts";
import type { ObjectGetter } from "./object-get.ts";
import { type ByteSpan, OrderedHasher } from "./ordered-hasher.ts";
import { type RetryOptions, withRetry } from "./retry.ts";
import { classifyS3Error, type S3ErrorContext } from "./s3-errors.ts";

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
    const hasher = plan.spans === undefined ? undefined : new OrderedHasher(file, plan.spans);
    const transfer = await transferRanges(file, options, hasher);
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
  hasher: OrderedHasher | undefined,
): Promise<TransferStats> {
  const { source } = options;
  const rangeSize = Math.max(1, options.rangeSize ?? DEFAULT_RANGE_SIZE);
  const spans: ByteSpan[] = [];
  for (let start = 0; start < source.bytes; start += rangeSize) {
    spans.push({ start, end: Math.min(source.bytes, start + rangeSize) });
  }
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

  const fetchSpan = async (index: number): Promise<void> => {
    const span = spans[index] as ByteSpan;
    const length = span.end - span.start;
    await withRetry(
      async () => {
        const start = span.start + (written[index] ?? 0);
        let received = 0;
        try {
          const response = await options.getter.get({
            bucket: source.bucket,
            key: source.key,
            versionId: source.versionId,
            range: { start, end: span.end - 1 },
            ifMatch: source.etag,
            signal,
          });
          checkRangeAnswer(
            response.contentRange,
            response.contentLength,
            start,
            span.end,
            source.bytes,
            options,
          );
          let pending: Buffer[] = [];
          let pendingBytes = 0;
          const flush = async (): Promise<void> => {
            if (pendingBytes === 0) return;
            const batch = pending;
            const bytes = pendingBytes;
            pending = [];
            pendingBytes = 0;
            const position = span.start + (written[index] ?? 0);
            await file.writev(batch, position);
            written[index] = (written[index] ?? 0) + bytes;
            options.onBytes?.(bytes);
            hasher?.advanceTo(contiguousEnd());
          };
          try {
            for await (const chunk of response.body as AsyncIterable<Buffer>) {
              const room = length - (written[index] ?? 0) - pendingBytes;
              if (chunk.length > room)
                throw new Error("the store sent more bytes than the range holds");
              received += chunk.length;
              pending.push(chunk);
              pendingBytes += chunk.length;
              if (pendingBytes >= WRITE_BATCH) await flush();
            }
          } catch (error) {
            response.body.destroy();
            // What arrived before the failure is a valid prefix of the range: keep it, so the
            // retry resumes after it instead of fetching it again.
            await flush().catch(() => {});
            throw error;
          }
          await flush();
          if ((written[index] ?? 0) !== length) {
            const error = new Error(
              `connection closed after ${written[index]} of ${length} bytes of a range`,
            ) as NodeJS.ErrnoException;
            error.code = "ECONNRESET";
            throw error;
          }
        } catch (error) {
          if (signal.aborted && !(error instanceof DsfetchError)) throw signal.reason ?? error;
          throw classifyS3Error(error, options.errorContext);
        } finally {
          // Bytes received but not kept (a partial batch lost to a write error) come again.
          stats.refetchedBytes += Math.max(
            0,
            received - ((written[index] ?? 0) - (start - span.start)),
          );
        }
      },
      {
        ...options.retry,
        signal,
        onRetry: (error, attempt, delay) => {
          stats.retries += 1;
          options.retry?.onRetry?.(error, attempt, delay);
        },
      },
    );
  };

  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < spans.length && !signal.aborted) {
      const index = next++;
      try {
        await fetchSpan(index);
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

function checkRangeAnswer(
  range: { start: number; end: number; total: number } | undefined,
  contentLength: number,
  start: number,
  end: number,
  total: number,
  options: DownloadObjectOptions,
): void {
  const wholeObject =
    range === undefined && start === 0 && end === total && contentLength === total;
  const exact =
    range !== undefined && range.start === start && range.end === end - 1 && range.total === total;
  if (wholeObject || (exact && contentLength === end - start)) return;
  if (range !== undefined && range.total !== total) {
    // The object's size changed under us despite If-Match: the store does not honour it.
    throw new DsfetchError(
      "OBJECT_CHANGED",
      `${options.errorContext.dataset}: ${options.errorContext.uri} changed size during the download (${total} → ${range.total} bytes)`,
      {
        dataset: options.errorContext.dataset,
        hint: 'run again to fetch the new version, or pin "versionId"',
      },
    );
  }
  throw new DsfetchError(
    "S3_ERROR",
    `${options.errorContext.dataset}: the store answered a request for bytes ${start}-${end - 1} with ${range === undefined ? "no Content-Range" : `bytes ${range.start}-${range.end}/${range.total}`} and ${contentLength} bytes`,
    {
      dataset: options.errorContext.dataset,
      hint: "this store does not serve byte ranges correctly",
    },
  );
}
