/**
 * One byte range of an object, fetched with If-Match (and versionId) and resumed after a
 * failure from the bytes already kept by the sink, so a cut connection costs only what was
 * in flight. Used by downloadObject (sink: positional writes to a file) and orderedRanges
 * (sink: memory, for streaming archive expansion).
 */
import { DsfetchError } from "../errors.ts";
import type { ObjectGetter } from "./object-get.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { type RetryOptions, withRetry } from "./retry.ts";
import { classifyS3Error, type S3ErrorContext } from "./s3-errors.ts";

export interface RangeSource {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  readonly etag: string;
  readonly bytes: number;
  /** Its HEAD's Last-Modified, if known: pins answers that name no ETag (object-get.ts). */
  readonly lastModified?: string | undefined;
}

export interface RangeSink {
  /** Bytes of the span accepted so far (the retry resumes after them). */
  kept(): number;
  /**
   * Takes the next bytes of the span: a view of a reused buffer, valid only during the call,
   * so the sink copies them. A returned promise pauses the connection until it settles.
   */
  push(chunk: Buffer): void | Promise<void>;
  /** Makes everything pushed count as kept (e.g. writes a pending batch). */
  flush(): Promise<void>;
  /** Memory the next bytes may be read into straight from the socket (http1.ts BodyTarget). */
  room?(): Buffer | undefined;
  /** A failure of the sink itself (a full disk) that no retry can mend, if any. */
  failed?(): unknown;
}

export interface RangeContext {
  readonly getter: ObjectGetter;
  readonly source: RangeSource;
  readonly signal: AbortSignal;
  readonly retry?: RetryOptions | undefined;
  readonly errorContext: S3ErrorContext;
  /** Counts bytes received more than once and retries, across spans. */
  readonly stats: { refetchedBytes: number; retries: number };
  /**
   * Sees each answer's headers before its body is read; what it throws fails the span
   * (retried only if retryable) and the body is not read.
   */
  readonly onAnswer?: ((answer: RangeAnswer) => void) | undefined;
}

/** What a range's answer says of the object, besides its bytes. */
export interface RangeAnswer {
  /** Server-side encryption ("aws:kms", "SSE-C", …): SSE-KMS and SSE-C ETags are not MD5s. */
  readonly encryption: string | undefined;
}

/** The context of one object's ranges: what its download was given, its signal and counters. */
export function rangeContext(
  options: Pick<RangeContext, "getter" | "source" | "retry" | "errorContext"> &
    Partial<Pick<RangeContext, "onAnswer">>,
  signal: AbortSignal,
  stats: RangeContext["stats"],
): RangeContext {
  return {
    getter: options.getter,
    source: options.source,
    signal,
    retry: options.retry,
    errorContext: options.errorContext,
    stats,
    onAnswer: options.onAnswer,
  };
}

/**
 * Bytes an attempt must add to what its span kept for its failure not to use up a retry:
 * 1 MiB, or a 16th of a smaller span. Review, 2026-12-06: the retries were counted per span
 * whatever each attempt brought, and a direct download's span is a whole multipart part (up
 * to 5 GiB): a 1 GiB part whose connection was reset seven times, resuming fine each time,
 * failed as TRANSIENT. Failures that make no such progress still use the budget up, so a
 * server that sends a few bytes and resets cannot hold a span for ever: a span gets at most
 * its length / PROGRESS_REFUND attempts more than the retries.
 */
export const PROGRESS_REFUND = 1024 * 1024;

/** The progress an attempt at a span of `length` bytes must make to be tried again for free. */
export function refundingProgress(length: number): number {
  return Math.max(1, Math.min(PROGRESS_REFUND, Math.ceil(length / 16)));
}

export async function fetchSpan(
  context: RangeContext,
  span: ByteSpan,
  sink: RangeSink,
): Promise<void> {
  const { source, signal } = context;
  const length = span.end - span.start;
  /** Bytes the last attempt added to what the span kept. */
  let progress = 0;
  await withRetry(
    async () => {
      const keptBefore = sink.kept();
      progress = 0;
      const start = span.start + keptBefore;
      let received = 0;
      try {
        const response = await context.getter.get({
          bucket: source.bucket,
          key: source.key,
          versionId: source.versionId,
          range: { start, end: span.end - 1 },
          ifMatch: source.etag,
          // Pins an answer that names no ETag (object-get.ts pinMismatch).
          lastModified: source.lastModified,
          signal,
        });
        try {
          checkRangeAnswer(
            response.contentRange,
            response.contentLength,
            start,
            span.end,
            source.bytes,
            context,
          );
          context.onAnswer?.({ encryption: response.encryption });
        } catch (error) {
          // The body is not wanted: free the connection now, not at the idle timeout.
          response.discard();
          throw error;
        }
        try {
          const room = sink.room?.bind(sink);
          await response.readBody(
            (chunk) => {
              if (keptBefore + received + chunk.length > length) {
                throw new Error("the store sent more bytes than the range holds");
              }
              received += chunk.length;
              return sink.push(chunk);
            },
            room === undefined ? undefined : { room },
          );
        } catch (error) {
          // What arrived before the failure is a valid prefix of the range: keep it, so the
          // retry resumes after it instead of fetching it again.
          await sink.flush().catch(() => {});
          // A full disk found while the connection failed: that is the failure to report
          // (retrying the network would end as a transient error and hide it).
          const own = sink.failed?.();
          if (own !== undefined) throw own;
          throw error;
        }
        await sink.flush();
        if (sink.kept() !== length) {
          const error = new Error(
            `connection closed after ${sink.kept()} of ${length} bytes of a range`,
          ) as NodeJS.ErrnoException;
          error.code = "ECONNRESET";
          throw error;
        }
      } catch (error) {
        if (signal.aborted && !(error instanceof DsfetchError)) throw signal.reason ?? error;
        throw classifyS3Error(error, context.errorContext);
      } finally {
        progress = sink.kept() - keptBefore;
        // Bytes received but not kept (a batch lost to a failed write) come again.
        context.stats.refetchedBytes += Math.max(0, received - progress);
      }
    },
    {
      ...context.retry,
      signal,
      consumesRetry: () => progress < refundingProgress(length),
      onRetry: (error, attempt, delay) => {
        context.stats.retries += 1;
        context.retry?.onRetry?.(error, attempt, delay);
      },
    },
  );
}

/** Splits an object into ranges of `rangeSize`. */
export function splitSpans(bytes: number, rangeSize: number): ByteSpan[] {
  const spans: ByteSpan[] = [];
  for (let start = 0; start < bytes; start += rangeSize) {
    spans.push({ start, end: Math.min(bytes, start + rangeSize) });
  }
  return spans;
}

/**
 * Whether an answer is the range asked for: exactly its bytes (206 with its Content-Range), or
 * the whole object when the range was the whole object (a 200 from a store that ignores
 * Range). Content-Length may be missing: a body sent with Transfer-Encoding: chunked (valid
 * HTTP/1.1; a proxy or gateway re-framing answers, as the interop review of 2026-12-06 found)
 * or ending at the connection's close has none, and was refused for good ("no Content-Length").
 * Its length is held to the range's all the same: more bytes than the range fail the read
 * (fetchSpan's over-length check), fewer fail it as a cut connection (the short-body check),
 * whatever the framing. A Content-Length that is there must be the range's.
 */
function checkRangeAnswer(
  range: { start: number; end: number; total: number } | undefined,
  contentLength: number,
  start: number,
  end: number,
  total: number,
  context: RangeContext,
): void {
  const lengthIs = (bytes: number) => Number.isNaN(contentLength) || contentLength === bytes;
  const wholeObject = range === undefined && start === 0 && end === total && lengthIs(total);
  const exact =
    range !== undefined && range.start === start && range.end === end - 1 && range.total === total;
  if (wholeObject || (exact && lengthIs(end - start))) return;
  const { dataset, uri } = context.errorContext;
  if (range !== undefined && range.total !== total) {
    // The object's size changed under us despite If-Match: the store does not honour it.
    throw new DsfetchError(
      "OBJECT_CHANGED",
      `${dataset}: ${uri} changed size during the download (${total} → ${range.total} bytes)`,
      { dataset, hint: 'run again to fetch the new version, or pin "versionId"' },
    );
  }
  // What is wrong is the range, or a Content-Length that disagrees with it; an answer without
  // Content-Length (chunked, or ending at the close) is not refused for that.
  const length = Number.isNaN(contentLength)
    ? "no Content-Length (a chunked body, or one that ends when the connection closes)"
    : `a Content-Length of ${contentLength} bytes`;
  const answered =
    range === undefined
      ? `no Content-Range and ${length}${start === 0 && end === total ? `, for an object of ${total} bytes` : " (a store that ignores Range sends the whole object)"}`
      : `bytes ${range.start}-${range.end}/${range.total}${exact ? ` but ${length}` : ""}`;
  throw new DsfetchError(
    "S3_ERROR",
    `${dataset}: the store answered a request for bytes ${start}-${end - 1} with ${answered}`,
    { dataset, hint: "this store does not serve byte ranges correctly" },
  );
}
