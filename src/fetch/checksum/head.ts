/**
 * Reads the additional checksums a HeadObject (or GetObject) with `ChecksumMode: "ENABLED"`
 * reports, and picks the one to verify against. The values come from the store and are
 * treated as hostile: anything malformed is rejected with a reason, never thrown.
 *
 * Accepted forms: canonical base64 of exactly the algorithm's digest size, optionally
 * followed by `-<N>` (1 ≤ N ≤ 10,000, S3's part limit) for a COMPOSITE checksum.
 * `ChecksumType` decides the kind when present; without it (older stores) a value with `-N`
 * is composite and one without is full-object. Rejected: FULL_OBJECT values with a part
 * count, CRC64NVME composites (S3 defines CRC64NVME as full-object only, so its composite
 * rule is unknown), and, when the ETag shows a multipart upload, a part count that disagrees
 * with it or a "full-object" SHA (S3 cannot store one: SHA checksums of multipart uploads
 * are always composite, so the kind was misreported).
 *
 * Only whole-object responses: with PartNumber, stores report the part's checksum without
 * ChecksumType or "-N", indistinguishable here from a full-object one.
 *
 * Preference when several are usable: full-object before composite (no part boundaries
 * needed, and CRCs combine from ranges hashed in parallel: ./combine.ts); within each, CRCs
 * before SHAs (they need no in-order pass), then by measured speed (./algorithms.ts).
 */
import { type ChecksumAlgorithm, DIGEST_BYTES } from "./algorithms.ts";
import type { ObjectChecksum } from "./composite.ts";

/** The checksum fields of HeadObjectCommandOutput / GetObjectCommandOutput. */
export interface ChecksumFields {
  ChecksumCRC32?: string | undefined;
  ChecksumCRC32C?: string | undefined;
  ChecksumCRC64NVME?: string | undefined;
  ChecksumSHA1?: string | undefined;
  ChecksumSHA256?: string | undefined;
  ChecksumType?: string | undefined;
}

export type ParsedChecksum =
  | { checksum: ObjectChecksum; reason?: undefined }
  | { checksum: undefined; reason: string };

export interface ChecksumChoice {
  /** The checksum to verify against; undefined when none is usable (see `rejected`). */
  checksum: ObjectChecksum | undefined;
  /** Why each reported checksum that cannot be used was rejected; empty if none was. */
  rejected: string[];
}

/** S3's limit on parts per multipart upload. */
const MAX_PARTS = 10_000;
/** Longer than any valid value (44 base64 characters + "-10000"); keeps messages short too. */
const MAX_VALUE_LENGTH = 64;

const ORDER: readonly ChecksumAlgorithm[] = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

/** The output field that carries each algorithm. */
const FIELD = {
  CRC32: "ChecksumCRC32",
  CRC32C: "ChecksumCRC32C",
  CRC64NVME: "ChecksumCRC64NVME",
  SHA1: "ChecksumSHA1",
  SHA256: "ChecksumSHA256",
} as const satisfies Record<ChecksumAlgorithm, keyof ChecksumFields>;

/** Fields of the SDK's output that are not checksums of ours to compute. */
const NOT_ALGORITHMS = new Set(["ChecksumType", "ChecksumMode", ...Object.values(FIELD)]);

/** The value quoted for a message: JSON, cut short. */
function quote(value: string): string {
  return value.length > 40 ? `${JSON.stringify(value.slice(0, 40))}…` : JSON.stringify(value);
}

/**
 * Parses one reported value. `checksumType` is the response's ChecksumType; `etagParts` the
 * part count of the object's multipart ETag, if it has one.
 */
export function parseChecksum(
  algorithm: ChecksumAlgorithm,
  value: unknown,
  checksumType?: unknown,
  etagParts?: number,
): ParsedChecksum {
  const reject = (why: string): ParsedChecksum => ({
    checksum: undefined,
    reason: `the store's ${algorithm} checksum ${why}`,
  });
  if (typeof value !== "string") return reject("is not a string");
  if (value.length > MAX_VALUE_LENGTH) return reject(`${quote(value)} is too long`);
  if (
    checksumType !== undefined &&
    checksumType !== "FULL_OBJECT" &&
    checksumType !== "COMPOSITE"
  ) {
    const shown = typeof checksumType === "string" ? quote(checksumType) : typeof checksumType;
    return reject(`has an unknown ChecksumType ${shown}`);
  }
  const match = /^([A-Za-z0-9+/]+={0,2})(?:-([1-9][0-9]{0,4}))?$/.exec(value);
  const base64 = match?.[1];
  if (match === null || base64 === undefined) {
    return reject(`${quote(value)} is not base64, optionally followed by -<part count>`);
  }
  const digest = Buffer.from(base64, "base64");
  // Node's decoder skips what it cannot use; re-encoding catches wrong padding and stray bits.
  if (digest.toString("base64") !== base64 || digest.length !== DIGEST_BYTES[algorithm]) {
    return reject(`${quote(value)} is not the base64 of a ${DIGEST_BYTES[algorithm]}-byte digest`);
  }
  const suffix = match[2] === undefined ? undefined : Number(match[2]);
  if (suffix !== undefined && suffix > MAX_PARTS) {
    return reject(`${quote(value)} claims ${suffix} parts (S3 allows at most ${MAX_PARTS})`);
  }
  if (checksumType === "FULL_OBJECT" && suffix !== undefined) {
    return reject(`${quote(value)} has a part count but its ChecksumType is FULL_OBJECT`);
  }
  const composite = checksumType === "COMPOSITE" || suffix !== undefined;
  if (composite && algorithm === "CRC64NVME") {
    return reject("is COMPOSITE, which S3 does not define for CRC64NVME");
  }
  if (etagParts !== undefined && suffix !== undefined && suffix !== etagParts) {
    return reject(`${quote(value)} counts ${suffix} parts but the ETag counts ${etagParts}`);
  }
  if (etagParts !== undefined && !composite && (algorithm === "SHA1" || algorithm === "SHA256")) {
    return reject(
      "is reported as full-object on a multipart upload, which S3 stores only as COMPOSITE",
    );
  }
  if (
    etagParts !== undefined &&
    checksumType === undefined &&
    suffix === undefined &&
    algorithm !== "CRC64NVME"
  ) {
    // A multipart upload's CRC32/CRC32C may be either kind; a store that says neither the type
    // nor the part count leaves it unknown, and guessing wrong would fail good downloads.
    return reject(
      `${quote(value)} on a multipart upload comes without ChecksumType or part count: full-object or composite is unknown`,
    );
  }
  if (!composite) return { checksum: { algorithm, type: "full-object", value: digest } };
  const parts = suffix ?? etagParts;
  return {
    checksum:
      parts === undefined
        ? { algorithm, type: "composite", value: digest }
        : { algorithm, type: "composite", value: digest, parts },
  };
}

/**
 * Every checksum `head` reports, parsed, and the one to verify against (the preference is
 * in the file header). `etagParts`: the part count of the object's multipart ETag, if any.
 */
export function chooseChecksum(head: ChecksumFields, etagParts?: number): ChecksumChoice {
  const usable: ObjectChecksum[] = [];
  const rejected: string[] = [];
  for (const algorithm of ORDER) {
    const value = head[FIELD[algorithm]];
    if (value === undefined) continue;
    const parsed = parseChecksum(algorithm, value, head.ChecksumType, etagParts);
    if (parsed.checksum === undefined) rejected.push(parsed.reason);
    else usable.push(parsed.checksum);
  }
  // Newer SDKs know more algorithms (SHA512, MD5, XXHASH*): say they went unused.
  for (const [key, value] of Object.entries(head)) {
    if (!NOT_ALGORITHMS.has(key) && /^Checksum[A-Z0-9]+$/.test(key) && value !== undefined) {
      rejected.push(
        `the store's ${key.slice("Checksum".length)} checksum is not one dsfetch computes`,
      );
    }
  }
  const checksum =
    usable.find((c) => c.type === "full-object") ?? usable.find((c) => c.type === "composite");
  return { checksum, rejected };
}
