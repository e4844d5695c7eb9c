/**
 * How an object's bytes are proved (SPEC §4), decided before the download: an S3 additional
 * checksum when the store reports a usable one, else the ETag (MD5, or multipart MD5 at
 * learned part boundaries), else the size alone, with the reason. Checksums come first
 * because every one of them is cheaper to compute than MD5 here (MD5 0.75 GB/s against
 * CRC32 2.6-4.7, SHA-256 1.8, CRC32C 1.4, CRC64NVME 0.8-0.9: src/fetch/checksum/algorithms.ts)
 * and a full-object checksum needs no part boundaries (no HEAD per part). Pure.
 */
import { createHash } from "node:crypto";
import { DsfetchError, type DsfetchErrorOptions } from "../errors.ts";
import {
  type Checksum,
  type ChecksumAlgorithm,
  checksumMatches,
  checksumMethod,
  compositeChecksum,
  createChecksum,
  formatChecksum,
  type ObjectChecksum,
} from "./checksum/index.ts";
import { etagKind, multipartEtag } from "./etag.ts";
import type { ByteSpan } from "./ordered-hasher.ts";

export type DigestAlgorithm = "MD5" | ChecksumAlgorithm;

/** What is known of an object before its bytes arrive. */
export interface VerificationSource {
  /** Lowercase, unquoted. */
  readonly etag: string;
  readonly bytes: number;
  /** Server-side encryption reported by HEAD (SSE-KMS and SSE-C ETags are not MD5s). */
  readonly encryption?: string | undefined;
  /** The additional checksum the store reported, if usable (fetch/checksum/head.ts). */
  readonly checksum?: ObjectChecksum | undefined;
  /** Why reported checksums could not be used, if any were reported. */
  readonly checksumRejected?: readonly string[] | undefined;
}

export interface VerificationPlan {
  /** "md5", "multipart-md5", "checksum:<alg>", or "size-only (<reason>)". */
  readonly method: string;
  /** The digest to compute over each span; undefined when only the size can be checked. */
  readonly algorithm: DigestAlgorithm | undefined;
  /** One span per digest, in order: the whole object, or each part. */
  readonly spans: readonly ByteSpan[] | undefined;
  /** What is compared, for messages: "its ETag", "its CRC32 checksum". */
  readonly against: string;
  /** The expected value as the store shows it. */
  readonly expected: string;
  readonly checksum: ObjectChecksum | undefined;
}

/** Number of parts whose boundaries must be learned first (HEAD with PartNumber), if any. */
export function partsToLearn(source: VerificationSource): number | undefined {
  const { checksum } = source;
  if (checksum?.type === "full-object") return undefined;
  const kind = etagKind(source.etag, source.encryption);
  const count =
    checksum?.type === "composite"
      ? (checksum.parts ?? etagPartCount(source.etag))
      : kind.kind === "multipart"
        ? kind.parts
        : undefined;
  // One part spans the whole object (planVerification): nothing to ask.
  return count === 1 ? undefined : count;
}

/** The multipart part count an ETag shows ("…-N"), whatever the encryption. */
export function etagPartCount(etag: string): number | undefined {
  const match = /-([1-9][0-9]{0,4})$/.exec(etag);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

export function planVerification(
  source: VerificationSource,
  parts: readonly ByteSpan[] | undefined,
): VerificationPlan {
  const whole: ByteSpan[] = [{ start: 0, end: source.bytes }];
  /**
   * The boundaries of `count` parts: those learned, or with one part, the whole object
   * (review, 2026-12-06: a 1-part multipart object, as `aws s3 cp -` uploads from a pipe,
   * fetched whole in a folder, was verified size-only, its boundaries "could not be learned").
   */
  const partsOf = (count: number | undefined): readonly ByteSpan[] | undefined =>
    parts ?? (count === 1 ? whole : undefined);
  const { checksum } = source;
  if (checksum !== undefined) {
    const base = {
      method: checksumMethod(checksum),
      algorithm: checksum.algorithm,
      against: `its ${checksum.algorithm} checksum`,
      expected: formatChecksum(checksum),
      checksum,
    };
    if (checksum.type === "full-object") return { ...base, spans: whole };
    const count = checksum.parts ?? etagPartCount(source.etag);
    const spans = partsOf(count);
    if (spans !== undefined && spans.length === count) return { ...base, spans: [...spans] };
  }
  const kind = etagKind(source.etag, source.encryption);
  const etagPlan = { against: "its ETag", expected: source.etag, checksum: undefined };
  if (kind.kind === "md5") return { ...etagPlan, method: "md5", algorithm: "MD5", spans: whole };
  if (kind.kind === "multipart") {
    const spans = partsOf(kind.parts);
    if (spans !== undefined && spans.length === kind.parts) {
      return { ...etagPlan, method: "multipart-md5", algorithm: "MD5", spans: [...spans] };
    }
  }
  const reasons = [
    kind.kind === "opaque" ? kind.reason : "the multipart part boundaries could not be learned",
  ];
  if (checksum !== undefined) {
    reasons.push(`the ${checksum.algorithm} composite checksum needs them too`);
  } else if (source.checksumRejected !== undefined && source.checksumRejected.length > 0) {
    reasons.push(...source.checksumRejected);
  } else {
    reasons.push("the store reported no additional checksum");
  }
  return {
    ...etagPlan,
    method: `size-only (${reasons.join("; ")})`,
    algorithm: undefined,
    spans: undefined,
  };
}

/** An incremental digest of one of the plan's algorithms. */
export function createDigest(algorithm: DigestAlgorithm): Checksum {
  if (algorithm !== "MD5") return createChecksum(algorithm);
  const hash = createHash("md5");
  return {
    update: (bytes) => {
      hash.update(bytes);
    },
    digest: () => hash.digest(),
  };
}

/**
 * Compares the digests computed over the plan's spans with what the store reported. Returns
 * what was found, as the store would show it, and whether it matches.
 */
export function compareDigests(
  plan: VerificationPlan,
  digests: readonly Buffer[],
): { matches: boolean; found: string } {
  const { algorithm, spans } = plan;
  if (algorithm === undefined || spans === undefined) return { matches: true, found: "" };
  // An empty span (an empty object) gives no bytes to a follower: its digest is that of nothing.
  const all = spans.map((_, i) => digests[i] ?? createDigest(algorithm).digest());
  const { checksum } = plan;
  if (checksum !== undefined) {
    const computed: ObjectChecksum =
      checksum.type === "full-object"
        ? { algorithm: checksum.algorithm, type: "full-object", value: all[0] as Buffer }
        : compositeChecksum(checksum.algorithm, all);
    return { matches: checksumMatches(checksum, computed), found: formatChecksum(computed) };
  }
  const found =
    plan.method === "md5" ? (all[0] as Buffer).toString("hex") : multipartEtag(all as Buffer[]);
  return { matches: found === plan.expected, found };
}

/** The manifest digest of a whole file, when the plan computed one: "md5:<hex>", "crc32:<base64>". */
export function fileDigest(plan: VerificationPlan, digests: readonly Buffer[]): string | undefined {
  const multipart = multipartDigest(plan, digests);
  if (multipart !== undefined) return multipart;
  if (plan.algorithm === undefined || plan.spans?.length !== 1) return undefined;
  if (plan.checksum !== undefined && plan.checksum.type !== "full-object") return undefined;
  if (plan.checksum === undefined && plan.method !== "md5") return undefined;
  const digest = digests[0] ?? createDigest(plan.algorithm).digest();
  return plan.algorithm === "MD5"
    ? `md5:${digest.toString("hex")}`
    : `${plan.algorithm.toLowerCase()}:${digest.toString("base64")}`;
}

/**
 * A multipart-MD5 object's digest with its part size, `md5parts:<part size>:<md5>-<parts>`
 * (the ETag), when every part but the last has one size (as every uploader makes them):
 * `list --verify` computes it again from the file (volumes/verify-content.ts). Without it
 * the large files, mostly multipart, were the ones it could not check (second exploratory
 * tester, 2026-12-08). Parts of several sizes: none (unchecked, as before).
 */
function multipartDigest(plan: VerificationPlan, digests: readonly Buffer[]): string | undefined {
  const spans = plan.spans;
  if (plan.method !== "multipart-md5" || plan.algorithm !== "MD5" || plan.checksum !== undefined) {
    return undefined;
  }
  if (spans === undefined || spans.length < 2 || digests.length !== spans.length) return undefined;
  const partSize = (spans[0] as ByteSpan).end - (spans[0] as ByteSpan).start;
  for (const [i, span] of spans.entries()) {
    const length = span.end - span.start;
    const last = i === spans.length - 1;
    if (last ? length < 1 || length > partSize : length !== partSize) return undefined;
  }
  return `md5parts:${partSize}:${multipartEtag(digests)}`;
}

/**
 * INTEGRITY from the digests' comparison (not a byte count): what a wrong multipart layout
 * gives too, so the callers may learn the parts and hash again (fetch/parts.ts relearnParts).
 */
export class DigestMismatch extends DsfetchError {
  constructor(message: string, options: DsfetchErrorOptions) {
    super("INTEGRITY", message, options);
  }
}

/**
 * The same mismatch, saying what was left unchecked: the part sizes a multipart layout was
 * inferred from could not all be asked for (relearnParts "unknown"). Its usual hint ("the
 * store's ETag is not the MD5…") would send users to the store's operator for what may be
 * parts of several sizes.
 */
export function layoutUnchecked(error: DigestMismatch): DigestMismatch {
  return new DigestMismatch(error.message, {
    dataset: error.dataset,
    expected: error.expected,
    found: error.found,
    hint: "nothing was published. The object's parts were taken to be of one size, and asking the store for each part's size (HEAD with partNumber) failed, so parts of several sizes were not ruled out; run again. If every run computes the same value, compare each part's size (`aws s3api head-object --part-number N`)",
    retryable: false,
    cause: error,
  });
}

/** Throws INTEGRITY (exit 5) with expected and computed values unless the digests match. */
export function checkDigests(
  plan: VerificationPlan,
  digests: readonly Buffer[],
  dataset: string,
  uri: string,
): void {
  const { matches, found } = compareDigests(plan, digests);
  if (matches) return;
  throw new DigestMismatch(
    `${dataset}: the bytes received for ${uri} do not match ${plan.against}: expected ${plan.expected}, computed ${found}`,
    {
      dataset,
      expected: plan.expected,
      found,
      // Some stores' ETags are not the MD5 of the bytes (encryption they do not name, their
      // own ETag scheme): such an object fails the same way at every run, and "run again"
      // alone sent users round in circles (interop review, 2026-12-06).
      hint:
        plan.checksum === undefined
          ? "the data was corrupted in transit or by the store; nothing was published; run again. If every run computes the same value, the store's ETag is not the MD5 of the object's bytes (some S3-compatible stores, encryption the store does not name): compare with `aws s3api head-object` and the file's `md5sum`, and tell the store's operator"
          : "the data was corrupted in transit or by the store; nothing was published; run again",
      retryable: false,
    },
  );
}
