/**
 * Verifies an object's bytes as they stream past in order (archive expansion): the digest
 * the plan chose (fetch/verification.ts) over each of its spans, and the byte count.
 */
import { DsfetchError } from "../errors.ts";
import type { Checksum } from "./checksum/index.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import {
  compareDigests,
  createDigest,
  planVerification,
  type VerificationPlan,
  type VerificationSource,
} from "./verification.ts";

export class StreamingVerifier {
  private readonly plan: VerificationPlan;
  private readonly digests: Buffer[] = [];
  private hash: Checksum | undefined;
  private spanIndex = 0;
  private offset = 0;

  constructor(source: VerificationSource, parts: readonly ByteSpan[] | undefined) {
    this.plan = planVerification(source, parts);
    if (this.plan.algorithm !== undefined) this.hash = createDigest(this.plan.algorithm);
  }

  update(chunk: Buffer): void {
    this.offset += chunk.length;
    const { spans, algorithm } = this.plan;
    if (spans === undefined || algorithm === undefined || this.hash === undefined) return;
    let rest = chunk;
    while (rest.length > 0) {
      const span = spans[this.spanIndex];
      if (span === undefined) return;
      const room = span.end - (this.offset - rest.length);
      const take = Math.min(room, rest.length);
      this.hash.update(rest.subarray(0, take));
      rest = rest.subarray(take);
      if (take === room) {
        this.digests.push(this.hash.digest());
        this.hash = createDigest(algorithm);
        this.spanIndex += 1;
      }
    }
  }

  /** Checks the bytes seen against the plan; returns how they were verified. */
  verify(dataset: string, uri: string, expectedBytes: number): string {
    if (this.offset !== expectedBytes) {
      throw new DsfetchError(
        "INTEGRITY",
        `${dataset}: received ${this.offset} of ${expectedBytes} bytes of ${uri}`,
        {
          dataset,
          expected: String(expectedBytes),
          found: String(this.offset),
          hint: "nothing was published; run again",
        },
      );
    }
    const { matches, found } = compareDigests(this.plan, this.digests);
    if (!matches) {
      throw new DsfetchError(
        "INTEGRITY",
        `${dataset}: the bytes received for ${uri} do not match ${this.plan.against}: expected ${this.plan.expected}, computed ${found}`,
        { dataset, expected: this.plan.expected, found, hint: "nothing was published; run again" },
      );
    }
    return this.plan.method;
  }
}
