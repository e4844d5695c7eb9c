/**
 * What an ETag can prove. A single-part upload's ETag is the MD5 of the bytes; a multipart
 * upload's is MD5(concat(MD5(part 1), …, MD5(part N))) followed by "-N". Objects encrypted
 * with SSE-KMS or SSE-C have ETags that are not digests of the data at all. Pure.
 */
import { createHash } from "node:crypto";

export type EtagKind =
  | { kind: "md5"; digest: string }
  | { kind: "multipart"; digest: string; parts: number }
  | { kind: "opaque"; reason: string };

export function etagKind(etag: string, encryption?: string | undefined): EtagKind {
  if (encryption !== undefined && encryption !== "AES256") {
    return {
      kind: "opaque",
      reason: `the object is encrypted with ${encryption}, so its ETag is not an MD5`,
    };
  }
  if (etag === "") {
    // A listing without ETags (some S3-compatible stores): nothing to check the bytes
    // against, nor to pin the ranged GETs to (object-get.ts sends no If-Match then).
    return {
      kind: "opaque",
      reason: "the store gave no ETag, so the download is not pinned to one version either",
    };
  }
  const single = /^([0-9a-f]{32})$/.exec(etag);
  if (single?.[1] !== undefined) return { kind: "md5", digest: single[1] };
  const multi = /^([0-9a-f]{32})-([1-9][0-9]*)$/.exec(etag);
  if (multi?.[1] !== undefined)
    return { kind: "multipart", digest: multi[1], parts: Number(multi[2]) };
  return {
    kind: "opaque",
    reason: `the ETag ${JSON.stringify(etag)} is not an MD5 this store documents`,
  };
}

/** The multipart ETag of parts whose MD5 digests (raw 16-byte buffers) are given in order. */
export function multipartEtag(partDigests: readonly Buffer[]): string {
  const outer = createHash("md5");
  for (const digest of partDigests) outer.update(digest);
  return `${outer.digest("hex")}-${partDigests.length}`;
}
