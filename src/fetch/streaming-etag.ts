/**
 * Recomputes an object's ETag from its bytes as they stream past in order: one MD5 for a
 * single-part ETag, one per part (at the learned boundaries) for a multipart one.
 */
import { createHash, type Hash } from "node:crypto";
import { DsfetchError } from "../errors.ts";
import { etagKind, multipartEtag } from "./etag.ts";
import type { ByteSpan } from "./ordered-hasher.ts";

export class StreamingEtag {
  private readonly parts: readonly ByteSpan[] | undefined;
  private readonly method: "md5" | "multipart-md5" | "size-only";
  private readonly reason: string | undefined;
  private readonly etag: string;
  private readonly digests: Buffer[] = [];
  private hash: Hash = createHash("md5");
  private partIndex = 0;
  private offset = 0;

  constructor(
    etag: string,
    bytes: number,
    parts: readonly ByteSpan[] | undefined,
    encryption?: string,
  ) {
    this.etag = etag;
    const kind = etagKind(etag, encryption);
    if (kind.kind === "md5") {
      this.method = "md5";
      this.parts = [{ start: 0, end: bytes }];
    } else if (kind.kind === "multipart" && parts !== undefined && parts.length === kind.parts) {
      this.method = "multipart-md5";
      this.parts = parts;
    } else {
      this.method = "size-only";
      this.parts = undefined;
      this.reason =
        kind.kind === "opaque" ? kind.reason : "the multipart part boundaries could not be learned";
    }
  }

  update(chunk: Buffer): void {
    this.offset += chunk.length;
    if (this.parts === undefined) return;
    let rest = chunk;
    while (rest.length > 0) {
      const part = this.parts[this.partIndex];
      if (part === undefined) return;
      const room = part.end - (this.offset - rest.length);
      const take = Math.min(room, rest.length);
      this.hash.update(rest.subarray(0, take));
      rest = rest.subarray(take);
      if (take === room) {
        this.digests.push(this.hash.digest());
        this.hash = createHash("md5");
        this.partIndex += 1;
      }
    }
  }

  /** Checks the bytes seen against the ETag; returns how they were verified. */
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
    if (this.method === "size-only") return `size-only (${this.reason})`;
    const found =
      this.method === "md5"
        ? (this.digests[0] ?? createHash("md5").digest()).toString("hex")
        : multipartEtag(this.digests);
    if (found !== this.etag) {
      throw new DsfetchError(
        "INTEGRITY",
        `${dataset}: the bytes received for ${uri} do not match its ETag: expected ${this.etag}, computed ${found}`,
        { dataset, expected: this.etag, found, hint: "nothing was published; run again" },
      );
    }
    return this.method;
  }
}
