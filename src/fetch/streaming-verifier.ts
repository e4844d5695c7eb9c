/**
 * Verifies an object's bytes as they stream past in order (archive expansion): the digest
 * the plan chose (fetch/verification.ts) over each of its spans, and the byte count.
 */
import { DsfetchError } from "../errors.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { createStreamHasher, type StreamHasher } from "./stream-hasher.ts";
import {
  checkDigests,
  planVerification,
  type VerificationPlan,
  type VerificationSource,
} from "./verification.ts";

export class StreamingVerifier {
  private readonly plan: VerificationPlan;
  private readonly hasher: StreamHasher | undefined;
  private readonly onHashed: (bytes: number) => void;
  private offset = 0;

  /**
   * @param onHashed how many more bytes were hashed (or need no hashing): a chunk given to
   *   update() may be reused only once its bytes were reported (stream-hasher.ts)
   */
  constructor(
    source: VerificationSource,
    parts: readonly ByteSpan[] | undefined,
    onHashed: (bytes: number) => void = () => {},
  ) {
    this.plan = planVerification(source, parts);
    this.onHashed = onHashed;
    const { algorithm, spans } = this.plan;
    this.hasher =
      algorithm === undefined || spans === undefined
        ? undefined
        : createStreamHasher(algorithm, spans, source.bytes, onHashed);
  }

  /** Bytes given that the hasher may hold (and read) before update() says to wait. */
  get holdBytes(): number {
    return this.hasher?.holdBytes ?? 0;
  }

  /** A promise when hashing is behind: the caller awaits it (memory stays bounded). */
  update(chunk: Buffer): undefined | Promise<void> {
    this.offset += chunk.length;
    if (this.hasher === undefined) {
      this.onHashed(chunk.length);
      return undefined;
    }
    return this.hasher.update(chunk);
  }

  /**
   * What the bytes are compared with ("its ETag", "its CRC32 checksum"), or undefined when
   * only their count can be checked (size-only: then nothing says the bytes are right).
   */
  get hashedAgainst(): string | undefined {
    return this.hasher === undefined ? undefined : this.plan.against;
  }

  /** Stops hashing (the expansion failed). */
  dispose(): void {
    this.hasher?.dispose();
  }

  /** Checks the bytes seen against the plan; returns how they were verified. */
  async verify(dataset: string, uri: string, expectedBytes: number): Promise<string> {
    if (this.offset !== expectedBytes) {
      this.dispose();
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
    const digests = this.hasher === undefined ? [] : await this.hasher.finish();
    checkDigests(this.plan, digests, dataset, uri);
    return this.plan.method;
  }
}
