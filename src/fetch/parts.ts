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
  const partSize = async (partNumber: number) => {
    const head = await withRetry(
      () =>
        client.getter.head({
          bucket: source.bucket,
          key: source.key,
          versionId: source.versionId,
          partNumber,
          ifMatch: source.etag,
          signal: retry.signal,
        }),
      retry,
    );
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
