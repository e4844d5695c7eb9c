/**
 * Digests of consecutive spans of a byte stream fed in order: one digest per span (a
 * multipart part, or the whole object). The in-order core of StreamingVerifier, run on the
 * main thread or in stream-hash-worker.ts. Pure computation.
 */
import type { Checksum } from "./checksum/index.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { createDigest, type DigestAlgorithm } from "./verification.ts";

export class SpanDigests {
  private readonly algorithm: DigestAlgorithm;
  private readonly spans: readonly ByteSpan[];
  readonly digests: Buffer[] = [];
  private hash: Checksum;
  private spanIndex = 0;
  private offset = 0;

  constructor(algorithm: DigestAlgorithm, spans: readonly ByteSpan[]) {
    this.algorithm = algorithm;
    this.spans = spans;
    this.hash = createDigest(algorithm);
  }

  update(chunk: Uint8Array): void {
    let rest = chunk;
    while (rest.length > 0) {
      const span = this.spans[this.spanIndex];
      if (span === undefined) return;
      const take = Math.min(span.end - this.offset, rest.length);
      this.hash.update(rest.subarray(0, take));
      rest = rest.subarray(take);
      this.offset += take;
      if (this.offset === span.end) {
        this.digests.push(this.hash.digest());
        this.hash = createDigest(this.algorithm);
        this.spanIndex += 1;
      }
    }
  }
}
