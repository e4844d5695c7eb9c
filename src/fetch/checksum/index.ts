/**
 * S3 additional checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256): what the store reports,
 * how to compute the same from the bytes, and how to do so from ranges fetched in parallel.
 * Pure: no I/O, nothing printed; hostile store values are rejected with reasons, and only a
 * caller's misuse (wrong digest sizes, ranges that do not tile a span) throws.
 *
 * Verifying a download:
 * 1. HeadObject with `ChecksumMode: "ENABLED"`, then `chooseChecksum(head, etagParts)` →
 *    `{ checksum, rejected }`. Never with a Range (S3 and MinIO then send no checksum) nor a
 *    PartNumber: that response carries the part's own checksum with no ChecksumType and no
 *    "-N", which reads as a full-object checksum of the object (test/fetch/checksum-minio).
 * 2. Compute the same kind:
 *    - full-object CRC: `new CrcRanges(alg)`, one `hasher(start)` per range in any order,
 *      then `digest(0, size)`; or `createChecksum(alg)` over the bytes in order;
 *    - full-object SHA: `createChecksum(alg)` over the bytes in order;
 *    - composite: one digest per part (CRC: `new CrcRanges(alg, partBoundaries)` and
 *      `digest(part.start, part.end)`; SHA: `createChecksum(alg)` per part, in order), then
 *      `compositeChecksum(alg, partDigests)`.
 * 3. `checksumMatches(expected, computed)`; report `checksumMethod(expected)`
 *    (`checksum:<alg>`), or show both with `formatChecksum` when they differ.
 *
 * API:
 *   type ChecksumAlgorithm = "CRC32" | "CRC32C" | "CRC64NVME" | "SHA1" | "SHA256"
 *   createChecksum(alg): { update(bytes: Uint8Array): void; digest(): Buffer }
 *   checksumOf(alg, bytes): Buffer
 *   combineCrc(alg: CrcAlgorithm, crcA, crcB, lengthB): Buffer       crc(A‖B)
 *   new CrcRanges(alg, cuts?) .hasher(start) .add(start, length, digest) .digest(start, end)
 *   compositeChecksum(alg, partDigests): ObjectChecksum              `<base64>-<N>` rule
 *   parseChecksum(alg, value, checksumType?, etagParts?): ParsedChecksum
 *   chooseChecksum(head, etagParts?): { checksum: ObjectChecksum | undefined; rejected: string[] }
 *   formatChecksum(c): string   checksumMatches(expected, computed): boolean
 *   checksumMethod(c): "checksum:<alg>"
 */
export {
  CHECKSUM_ALGORITHMS,
  type Checksum,
  type ChecksumAlgorithm,
  type CrcAlgorithm,
  checksumOf,
  createChecksum,
  DIGEST_BYTES,
  isCrcAlgorithm,
} from "./algorithms.ts";
export { combineCrc } from "./combine.ts";
export {
  checksumMatches,
  checksumMethod,
  compositeChecksum,
  formatChecksum,
  type ObjectChecksum,
} from "./composite.ts";
export { type CrcRangeHasher, CrcRanges } from "./crc-ranges.ts";
export {
  type ChecksumChoice,
  type ChecksumFields,
  chooseChecksum,
  type ParsedChecksum,
  parseChecksum,
} from "./head.ts";
