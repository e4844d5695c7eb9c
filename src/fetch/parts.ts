/**
 * Part boundaries of a multipart object, so its "-N" ETag can be recomputed: HEAD with
 * PartNumber=1 gives the part count and the first part's size. Uploaders use one part size
 * for all parts but the last, so when N parts of that size fit the object exactly, and the
 * last part's own HEAD agrees, the boundaries follow; otherwise each part is asked for
 * (bounded concurrency).
 */
import { mapLimit } from "../util/map-limit.ts";
import type { StoreClient } from "./client.ts";
import type { ObjectSource } from "./download-object.ts";
import type { HeadResponse } from "./object-get.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { type RetryOptions, withRetry } from "./retry.ts";

/** Above this many parts, asking for each one costs more than verification is worth here. */
const MAX_PART_HEADS = 10_000;

export async function learnParts(
  client: StoreClient,
  source: ObjectSource,
  expectedParts: number,
  retry: RetryOptions = {},
): Promise<ByteSpan[] | undefined> {
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
  const partSize = async (partNumber: number) => {
    const ask = (ifMatch: boolean) =>
      withRetry(
        () =>
          client.getter.head({
            bucket: source.bucket,
            key: source.key,
            versionId: source.versionId,
            partNumber,
            ifMatch: ifMatch ? source.etag : undefined,
            signal: retry.signal,
          }),
        retry,
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
  let first: { length: number | undefined; count: number | undefined };
  try {
    first = await partSize(1);
  } catch {
    // Stores without PartNumber support: verification falls back to the size, and says so.
    return undefined;
  }
  if (first.length === undefined || first.count !== expectedParts) return undefined;
  const size = first.length;
  const last = source.bytes - size * (expectedParts - 1);
  if (last > 0 && last <= size) {
    const uniform = Array.from({ length: expectedParts }, (_, i) => ({
      start: i * size,
      end: Math.min(source.bytes, (i + 1) * size),
    }));
    // Two parts: the first's size decides the layout. From three on, the sizes could merely
    // add up (parts copied from objects of several sizes, UploadPartCopy): the MD5s of wrong
    // boundaries never match, and the object failed INTEGRITY at every run. The last part's
    // size confirms the layout (a middle part's could still differ with the same total: only
    // a HEAD of every part rules that out), else every part is asked for.
    if (expectedParts <= 2) return uniform;
    let lastPart: { length: number | undefined };
    try {
      lastPart = await partSize(expectedParts);
    } catch {
      // Not asked for every part instead (up to 10,000 HEADs, each retried, on a store that
      // just refused one): verified by size, which the result says.
      return undefined;
    }
    if (lastPart.length === last) return uniform;
  }
  if (expectedParts > MAX_PART_HEADS) return undefined;
  try {
    const lengths = await mapLimit(
      Array.from({ length: expectedParts }, (_, i) => i + 1),
      16,
      async (n) => (n === 1 ? size : ((await partSize(n)).length ?? Number.NaN)),
    );
    const spans: ByteSpan[] = [];
    let offset = 0;
    for (const length of lengths) {
      spans.push({ start: offset, end: offset + length });
      offset += length;
    }
    return offset === source.bytes ? spans : undefined;
  } catch {
    return undefined;
  }
}

/** The HTTP status of a failed request (object-get.ts errors carry the SDK's shape). */
function statusOf(error: unknown): number | undefined {
  const status = (error as { $metadata?: { httpStatusCode?: unknown } } | undefined)?.$metadata
    ?.httpStatusCode;
  return typeof status === "number" ? status : undefined;
}
