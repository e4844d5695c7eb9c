/**
 * An object's stored checksum and the COMPOSITE rule of multipart uploads.
 *
 * S3 stores one of two kinds (its "ChecksumType"):
 * - FULL_OBJECT: the checksum of the object's bytes. Every single-request upload, and
 *   multipart uploads that asked for it (CRC32, CRC32C; CRC64NVME is always full-object).
 * - COMPOSITE: a multipart upload's checksum of checksums: the algorithm applied to the
 *   concatenated raw (binary, not base64) checksums of the parts in part-number order,
 *   reported as `<base64>-<part count>`. CRC32, CRC32C, SHA1, SHA256. It depends on the part
 *   boundaries, which the ETag's multipart part count and HEAD with PartNumber give.
 * (AWS user guide, "Checking object integrity"; MinIO computes the same in
 * CompleteMultipartUpload, cmd/erasure-multipart.go.)
 */
import { type ChecksumAlgorithm, checksumOf, DIGEST_BYTES } from "./algorithms.ts";

export interface ObjectChecksum {
  algorithm: ChecksumAlgorithm;
  type: "full-object" | "composite";
  /** The raw digest, big-endian (a checksum of part checksums when composite). */
  value: Buffer;
  /**
   * Composite only: the part count after the "-". Undefined when the store gave the value
   * without it (then the multipart ETag's count applies).
   */
  parts?: number;
}

/** The COMPOSITE checksum of parts whose raw digests are given in part-number order. */
export function compositeChecksum(
  algorithm: ChecksumAlgorithm,
  partDigests: readonly Uint8Array[],
): ObjectChecksum {
  const size = DIGEST_BYTES[algorithm];
  for (const [i, digest] of partDigests.entries()) {
    if (digest.length !== size) {
      throw new RangeError(
        `compositeChecksum: part ${i + 1} has a ${digest.length}-byte digest, not a ${size}-byte ${algorithm}`,
      );
    }
  }
  return {
    algorithm,
    type: "composite",
    value: checksumOf(algorithm, Buffer.concat(partDigests)),
    parts: partDigests.length,
  };
}

/** The value as S3 headers carry it: base64, plus `-<parts>` for a composite. */
export function formatChecksum(checksum: ObjectChecksum): string {
  const base64 = checksum.value.toString("base64");
  return checksum.parts === undefined ? base64 : `${base64}-${checksum.parts}`;
}

/**
 * True when `computed` proves the bytes match `expected`: same algorithm, type and digest,
 * and the same part count when `expected` gives one.
 */
export function checksumMatches(expected: ObjectChecksum, computed: ObjectChecksum): boolean {
  return (
    expected.algorithm === computed.algorithm &&
    expected.type === computed.type &&
    (expected.parts === undefined || expected.parts === computed.parts) &&
    expected.value.equals(computed.value)
  );
}

/** How a verified object is described in results: `checksum:<alg>`, e.g. `checksum:crc64nvme`. */
export function checksumMethod(checksum: ObjectChecksum): string {
  return `checksum:${checksum.algorithm.toLowerCase()}`;
}
