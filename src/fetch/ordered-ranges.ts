/**
 * An object as an in-order stream of chunks, fetched by parallel ranged GETs: up to
 * `concurrency` ranges are in flight ahead of the reader, each held in memory until its
 * turn, so memory stays bounded by concurrency × rangeSize whatever the object's size.
 * This is what feeds streaming archive expansion (no intermediate archive file).
 */

import type { BufferPool } from "../util/buffer-pool.ts";
import type { ObjectGetter } from "./object-get.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { fetchSpan, type RangeContext, type RangeSource, splitSpans } from "./range-fetch.ts";
import type { RetryOptions } from "./retry.ts";
import type { S3ErrorContext } from "./s3-errors.ts";

export interface OrderedRangesOptions {
  readonly getter: ObjectGetter;
  readonly source: RangeSource;
  readonly rangeSize: number;
  readonly concurrency: number;
  readonly signal?: AbortSignal | undefined;
  readonly retry?: RetryOptions | undefined;
  readonly errorContext: S3ErrorContext;
  readonly onBytes?: (bytes: number) => void;
  readonly stats: { refetchedBytes: number; retries: number };
  /**
   * Where each range's memory comes from. The consumer gives every chunk back to it once
   * no one reads the chunk any more (not when the next chunk is asked for: it may be
   * queued); chunks never given back are left to the GC.
   */
  readonly buffers?: BufferPool | undefined;
}

export async function* orderedRanges(options: OrderedRangesOptions): AsyncGenerator<Buffer> {
  const spans = splitSpans(options.source.bytes, options.rangeSize);
  const abort = new AbortController();
  const signal =
    options.signal === undefined ? abort.signal : AbortSignal.any([abort.signal, options.signal]);
  const context: RangeContext = {
    getter: options.getter,
    source: options.source,
    signal,
    retry: options.retry,
    errorContext: options.errorContext,
    stats: options.stats,
  };
  const fetchToMemory = async (span: ByteSpan): Promise<Buffer[]> => {
    // One buffer per range: the bodies arrive as views of a reused buffer (http1.ts).
    const length = span.end - span.start;
    const bytes = options.buffers?.take(length) ?? Buffer.allocUnsafe(length);
    let kept = 0;
    await fetchSpan(context, span, {
      kept: () => kept,
      // The socket reads straight into the range's memory (http1.ts BodyTarget); push then
      // sees its own bytes in place and has nothing to copy (327 MiB streamed: one memmove
      // of every byte less on the main thread).
      room: () => (kept < length ? bytes.subarray(kept, length) : undefined),
      push: (chunk) => {
        if (chunk.buffer === bytes.buffer && chunk.byteOffset === bytes.byteOffset + kept) {
          kept += chunk.length;
          return;
        }
        kept += chunk.copy(bytes, kept);
      },
      flush: async () => {},
    });
    return [bytes];
  };
  const inFlight: Promise<Buffer[]>[] = [];
  let next = 0;
  const refill = () => {
    while (inFlight.length < options.concurrency && next < spans.length) {
      const promise = fetchToMemory(spans[next] as ByteSpan);
      // A failure is seen when its turn comes; until then it must not be "unhandled".
      promise.catch(() => {});
      inFlight.push(promise);
      next += 1;
    }
  };
  try {
    refill();
    while (inFlight.length > 0) {
      const chunks = await (inFlight.shift() as Promise<Buffer[]>);
      refill();
      for (const chunk of chunks) {
        options.onBytes?.(chunk.length);
        yield chunk;
      }
    }
  } finally {
    // The reader stopped (done, failed, or gave up early): stop every request in flight.
    abort.abort(new Error("the reader stopped"));
  }
}
