/**
 * MD5 must see an object's bytes in order, but parallel ranged GETs finish out of order.
 * This follower hashes the written file from the start as far as it is contiguous, reading
 * back from the page cache, one digest per span (a multipart part, or the whole object). The
 * digest is MD5 or an S3 additional checksum (fetch/verification.ts). Memory stays one read
 * buffer, whatever the object size.
 */
import type { FileHandle } from "node:fs/promises";
import type { Checksum } from "./checksum/index.ts";
import { createDigest, type DigestAlgorithm } from "./verification.ts";

export interface ByteSpan {
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
}

const READ_SIZE = 4 * 1024 * 1024;

export class OrderedHasher {
  private readonly file: FileHandle;
  private readonly parts: readonly ByteSpan[];
  private readonly digests: Buffer[] = [];
  private partIndex = 0;
  private readonly algorithm: DigestAlgorithm;
  private hash: Checksum;
  private hashedUpTo = 0;
  private available = 0;
  private pumping: Promise<void> | undefined;
  private failure: unknown;
  private readonly buffer = Buffer.allocUnsafe(READ_SIZE);

  constructor(file: FileHandle, parts: readonly ByteSpan[], algorithm: DigestAlgorithm) {
    this.file = file;
    this.parts = parts;
    this.algorithm = algorithm;
    this.hash = createDigest(algorithm);
  }

  /** Everything before `offset` is written: hash it when convenient. */
  advanceTo(offset: number): void {
    if (offset <= this.available) return;
    this.available = offset;
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined;
      if (this.hashedUpTo < this.available && this.failure === undefined)
        this.advanceTo(this.available);
    });
  }

  /** Waits for all bytes up to `total` to be hashed and returns each span's digest. */
  async finish(total: number): Promise<Buffer[]> {
    this.advanceTo(total);
    while (this.pumping !== undefined) await this.pumping;
    if (this.failure !== undefined) throw this.failure;
    if (this.hashedUpTo !== total) throw new Error(`hashed ${this.hashedUpTo} of ${total} bytes`);
    return this.digests;
  }

  private async pump(): Promise<void> {
    try {
      while (this.hashedUpTo < this.available) {
        const part = this.parts[this.partIndex];
        if (part === undefined) throw new Error("more bytes than the parts describe");
        const length = Math.min(
          READ_SIZE,
          this.available - this.hashedUpTo,
          part.end - this.hashedUpTo,
        );
        const { bytesRead } = await this.file.read(this.buffer, 0, length, this.hashedUpTo);
        if (bytesRead !== length) throw new Error(`short read at ${this.hashedUpTo}`);
        this.hash.update(this.buffer.subarray(0, length));
        this.hashedUpTo += length;
        if (this.hashedUpTo === part.end) {
          this.digests.push(this.hash.digest());
          this.hash = createDigest(this.algorithm);
          this.partIndex += 1;
        }
      }
    } catch (error) {
      this.failure = error;
    }
  }
}
