/**
 * Part boundaries of a multipart object, so its "-N" ETag can be recomputed: HEAD with
 * PartNumber=1 gives the part count and the first part's size. Uploaders use one part size
 * for all parts but the last, so when N parts of that size fit the object exactly, and the
 * last part's own HEAD agrees, the boundaries follow; otherwise each part is asked for
 * (bounded concurrency). A layout so inferred can still be wrong in the middle: a digest
 * mismatch then asks for every part (relearnParts) before the bytes are called corrupt.
 */
import { mapLimit } from "../util/map-limit.ts";
import type { ObjectSource } from "./download-object.ts";
import type { HeadResponse, ObjectGetter } from "./object-get.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { type RetryOptions, withRetry } from "./retry.ts";
import { classifyS3Error, isRetryableS3Error, type S3ErrorContext } from "./s3-errors.ts";

/** Above this many parts, asking for each one costs more than verification is worth here. */
const MAX_PART_HEADS = 10_000;
/** Part HEADs in flight when every part is asked for. */
const HEAD_CONCURRENCY = 16;

export type PartGetter = Pick<ObjectGetter, "head">;

/**
 * The boundaries, or undefined where the store cannot say them (verified by size then, and
 * said). A part HEAD that failed for a reason that may pass (5xx, SlowDown, a connection that
 * dropped: isRetryableS3Error), once its retries are spent, is told apart by a plain HEAD of
 * the object: failing too, the store is out (thrown, classified with `errorContext`: an
 * outage of a moment was taken for a store without PartNumber, and the object published
 * verified by its size alone, for good: exploratory tester, 2026-12-07); answering, the part
 * HEAD is asked once more (an outage that just ended), and failing still, it is the store's
 * answer to PartNumber (a gateway that mishandles the query: size-only, as before, rather
 * than every multipart download failing there: review).
 */
export async function learnParts(
  getter: PartGetter,
  source: ObjectSource,
  expectedParts: number,
  retry: RetryOptions = {},
  errorContext?: S3ErrorContext,
): Promise<ByteSpan[] | undefined> {
  const partSize = partSizer(getter, source, retry);
  /** Whether the store answers a plain HEAD of the object; throws its failure if not. */
  const storeAnswers = async (partError: unknown): Promise<void> => {
    try {
      await getter.head({
        bucket: source.bucket,
        key: source.key,
        versionId: source.versionId,
        signal: retry.signal,
      });
    } catch (plainError) {
      retry.signal?.throwIfAborted();
      const error = isRetryableS3Error(plainError) ? plainError : partError;
      throw errorContext === undefined
        ? error
        : classifyS3Error(error, {
            ...errorContext,
            action: "learning the part boundaries (HEAD ?partNumber) of",
          });
    }
  };
  /**
   * What a failed part HEAD comes to: undefined (size-only) for the store's answer, a throw
   * while the store is out, or the part HEAD again (`ask`) once the store answers.
   */
  const afterFailure = async <T>(
    error: unknown,
    ask?: () => Promise<T>,
  ): Promise<T | undefined> => {
    retry.signal?.throwIfAborted();
    if (!isRetryableS3Error(error)) return undefined;
    await storeAnswers(error);
    if (ask === undefined) return undefined;
    try {
      return await ask();
    } catch {
      retry.signal?.throwIfAborted();
      return undefined;
    }
  };
  let first: PartSize | undefined;
  try {
    first = await partSize(1);
  } catch (error) {
    // Stores without PartNumber support: verification falls back to the size, and says so.
    first = await afterFailure(error, () => partSize(1));
  }
  if (first === undefined) return undefined;
  if (first.length === undefined || first.count !== expectedParts) return undefined;
  const size = first.length;
  const last = source.bytes - size * (expectedParts - 1);
  if (last > 0 && last <= size) {
    // Two parts: the first's size decides the layout. From three on, the sizes could merely
    // add up (parts copied from objects of several sizes, UploadPartCopy): the MD5s of wrong
    // boundaries never match, and the object failed INTEGRITY at every run. The last part's
    // size confirms the layout; a middle part's could still differ with the same total, which
    // only a HEAD of every part rules out: asked for only if the digests do not match
    // (relearnParts), not on every download.
    if (expectedParts <= 2) return uniformLayout(source.bytes, size, expectedParts);
    let lastPart: PartSize | undefined;
    try {
      lastPart = await partSize(expectedParts);
    } catch (error) {
      // Not asked for every part instead (up to 10,000 HEADs, each retried, on a store that
      // just refused one): verified by size, which the result says.
      lastPart = await afterFailure(error, () => partSize(expectedParts));
      if (lastPart === undefined) return undefined;
    }
    if (lastPart.length === last) return uniformLayout(source.bytes, size, expectedParts);
  }
  return everyPart(partSize, source, expectedParts, size, undefined, (error) =>
    afterFailure(error),
  );
}

/**
 * Whether `spans` may have been inferred by learnParts from the first and last parts alone:
 * three or more, all but the last of one size.
 */
export function layoutInferred(spans: readonly ByteSpan[]): boolean {
  const first = spans[0];
  if (spans.length < 3 || first === undefined) return false;
  const size = first.end - first.start;
  return spans.every((span, i) =>
    i === spans.length - 1 ? span.end - span.start <= size : span.end - span.start === size,
  );
}

/** What every part's HEAD said of a layout (relearnParts). */
export type Relearned =
  /** Other boundaries: the bytes are to be hashed again over them. */
  | { readonly kind: "differs"; readonly spans: ByteSpan[] }
  /** The same boundaries: the mismatch stands (bytes damaged, or an ETag that is no MD5). */
  | { readonly kind: "same" }
  /** A part's HEAD failed, or the sizes did not add up: the layout could not be checked. */
  | { readonly kind: "unknown" };

/**
 * After the digests over `spans` did not match: when they may have been inferred, every
 * part's HEAD (`onPart` after each: progress for a clock). Never throws; an abort of
 * `retry.signal` ends it as "unknown".
 */
export async function relearnParts(
  getter: PartGetter,
  source: ObjectSource,
  spans: readonly ByteSpan[],
  retry: RetryOptions = {},
  onPart?: () => void,
): Promise<Relearned> {
  if (!layoutInferred(spans)) return { kind: "same" };
  const learned = await everyPart(
    partSizer(getter, source, retry),
    source,
    spans.length,
    undefined,
    onPart,
  );
  if (learned === undefined) return { kind: "unknown" };
  const same =
    learned.length === spans.length &&
    learned.every((span, i) => span.start === spans[i]?.start && span.end === spans[i]?.end);
  return same ? { kind: "same" } : { kind: "differs", spans: learned };
}

function uniformLayout(bytes: number, size: number, parts: number): ByteSpan[] {
  return Array.from({ length: parts }, (_, i) => ({
    start: i * size,
    end: Math.min(bytes, (i + 1) * size),
  }));
}

interface PartSize {
  readonly length: number | undefined;
  readonly count: number | undefined;
}

/**
 * Each part's HEAD, bounded; undefined when one fails or they do not add up to the object.
 * After a failure no further HEAD starts (review, 2026-12-07: the other 15 went on through up
 * to 10,000 parts, each retried, on a store that was likely throttling).
 */
async function everyPart(
  partSize: (partNumber: number, stop?: AbortSignal) => Promise<PartSize>,
  source: ObjectSource,
  parts: number,
  firstLength?: number,
  onPart?: () => void,
  /** What a failed HEAD comes to (learnParts: a throw while the store is out). */
  onFailure: (error: unknown) => Promise<undefined> | undefined = () => undefined,
): Promise<ByteSpan[] | undefined> {
  if (parts > MAX_PART_HEADS) return undefined;
  // The HEADs in flight stop too (each went on through its retries, ~20 s, after the answer
  // was known: second review, 2026-12-07).
  const stop = new AbortController();
  try {
    const lengths = await mapLimit(
      Array.from({ length: parts }, (_, i) => i + 1),
      HEAD_CONCURRENCY,
      async (n) => {
        if (n === 1 && firstLength !== undefined) return firstLength;
        if (stop.signal.aborted) return Number.NaN;
        try {
          const length = (await partSize(n, stop.signal)).length ?? Number.NaN;
          onPart?.();
          return length;
        } catch (error) {
          stop.abort();
          throw error;
        }
      },
    );
    const spans: ByteSpan[] = [];
    let offset = 0;
    for (const length of lengths) {
      spans.push({ start: offset, end: offset + length });
      offset += length;
    }
    return offset === source.bytes ? spans : undefined;
  } catch (error) {
    return await onFailure(error);
  }
}

/** Asks for one part's size (and the part count) with HEAD ?partNumber=N. */
function partSizer(
  getter: PartGetter,
  source: ObjectSource,
  retry: RetryOptions,
): (partNumber: number, stop?: AbortSignal) => Promise<PartSize> {
  /**
   * Whether the part HEADs carry If-Match. moto answers `HEAD ?partNumber=1` with If-Match by
   * 412, comparing it with the part's own ETag, not the object's (a store may also answer 200
   * with the part's ETag, which object-get.ts takes for a 412); every multipart object was then
   * verified by its size alone, silently (interop review, 2026-12-06). After such a 412 the
   * part is asked for again without If-Match, and so are the later parts. Safe: the GETs of
   * the object's bytes stay pinned by If-Match, so an object overwritten meanwhile is still
   * caught there; boundaries of another version can only make the recomputed ETag differ
   * (the download fails INTEGRITY), never let wrong bytes pass.
   */
  let pinned = source.etag !== "";
  return async (partNumber, stop) => {
    const signal =
      stop === undefined || retry.signal === undefined
        ? (stop ?? retry.signal)
        : AbortSignal.any([retry.signal, stop]);
    const ask = (ifMatch: boolean) =>
      withRetry(
        () =>
          getter.head({
            bucket: source.bucket,
            key: source.key,
            versionId: source.versionId,
            partNumber,
            ifMatch: ifMatch ? source.etag : undefined,
            signal,
          }),
        { ...retry, signal },
      );
    let head: HeadResponse;
    if (!pinned) head = await ask(false);
    else {
      try {
        head = await ask(true);
      } catch (error) {
        if (statusOf(error) !== 412) throw error;
        head = await ask(false);
        pinned = false;
      }
    }
    const number = (name: string) => {
      const text = head.headers[name];
      const value = text === undefined || !/^\s*\d+\s*$/.test(text) ? Number.NaN : Number(text);
      return Number.isSafeInteger(value) && value > 0 ? value : undefined;
    };
    return { length: number("content-length"), count: number("x-amz-mp-parts-count") };
  };
}

/** The HTTP status of a failed request (object-get.ts errors carry the SDK's shape). */
function statusOf(error: unknown): number | undefined {
  const status = (error as { $metadata?: { httpStatusCode?: unknown } } | undefined)?.$metadata
    ?.httpStatusCode;
  return typeof status === "number" ? status : undefined;
}
