/**
 * Resolving a dataset against its store, before any byte is written (SPEC §4): HEAD for an
 * object (checking the expected ETag and versionId), a paginated listing for a prefix or
 * a bucket. `s3://b/key` without a trailing slash is an object if that key exists, else
 * the prefix `key/`.
 */
import { createHash } from "node:crypto";
import { normalizeEtag } from "../config/dataset.ts";
import { formatS3Uri } from "../config/s3-uri.ts";
import type { DatasetSpec } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";
import { type ChecksumFields, chooseChecksum, type ObjectChecksum } from "./checksum/index.ts";
import type { StoreClient } from "./client.ts";
import { type ListedEntry, listObjectsPage } from "./list-objects.ts";
import { listTree, type PageFetcher } from "./list-tree.ts";
import { checksumHeaders, encryptionOf, type HeadResponse } from "./object-get.ts";
import { DEFAULT_RETRIES, type RetryOptions, withRetry } from "./retry.ts";
import {
  checksumModeRefusal,
  checksumModeRefused,
  classifyS3Error,
  rememberChecksumModeRefused,
  type S3ErrorContext,
} from "./s3-errors.ts";
import { etagPartCount } from "./verification.ts";

export interface ResolvedObject {
  readonly kind: "object";
  readonly bucket: string;
  readonly key: string;
  /** Lowercase, without quotes. */
  readonly etag: string;
  readonly versionId: string | undefined;
  readonly bytes: number;
  readonly lastModified: string | undefined;
  /** Server-side encryption that makes the ETag something other than an MD5, if any. */
  readonly encryption: string | undefined;
  /** The S3 additional checksum to verify against, when the store reports a usable one. */
  readonly checksum: ObjectChecksum | undefined;
  /** Why reported checksums were not usable (empty when none were reported). */
  readonly checksumRejected: readonly string[];
}

export interface ListedObject {
  readonly key: string;
  /**
   * Path of the object relative to the prefix. A listing's objects (listedUnder) slice it from
   * the key each time it is asked for: a getter, which a spread (`{ ...object }`) leaves out.
   */
  readonly relativePath: string;
  readonly bytes: number;
  readonly etag: string;
  /**
   * When the listing gave no ETag (etag ""): its LastModified, which then tells a replaced
   * object from the one staged (a replacement of the same size was reused as stale data for
   * good: review, 2026-12-06). Absent otherwise.
   */
  readonly lastModified?: string;
}

export interface ResolvedPrefix {
  readonly kind: "prefix";
  readonly bucket: string;
  /** "" for a whole bucket, else ends with "/". */
  readonly prefix: string;
  readonly objects: readonly ListedObject[];
  readonly bytes: number;
  /** SHA-256 over the sorted (key, size, ETag) listing: equal digests mean an unchanged folder. */
  readonly listingDigest: string;
}

export type Resolution = ResolvedObject | ResolvedPrefix;

/** The objects a resolution stands for (the files it writes, but for an archive's): pure. */
export function objectCount(resolution: Resolution): number {
  return resolution.kind === "prefix" ? resolution.objects.length : 1;
}

/**
 * The files and directories a resolution writes under its dataset directory (an archive's
 * entries unknown: one): the inodes it takes (storage-check.ts inodeShortage). A folder's
 * directories come from its objects' paths: counted, the check missed folders of many
 * directories by as many inodes (exploratory tester, 2026-12-07: 100 objects in 100
 * directories passed it, ran out mid-way, and were downloaded again). Pure.
 */
export function entriesToWrite(resolution: Resolution): number {
  if (resolution.kind !== "prefix") return 1;
  const directories = new Set<string>();
  for (const object of resolution.objects) {
    const path = object.relativePath;
    for (let at = path.lastIndexOf("/"); at > 0; at = path.lastIndexOf("/", at - 1)) {
      const directory = path.slice(0, at);
      if (directories.has(directory)) break;
      directories.add(directory);
    }
  }
  return resolution.objects.length + directories.size;
}

/** Listing requests of one folder at once (list-tree.ts). */
const LISTING_CONCURRENCY = 16;

export async function resolveDataset(
  spec: DatasetSpec,
  client: StoreClient,
  retry: RetryOptions = {},
): Promise<Resolution> {
  const { bucket, key, target } = spec.location;
  const ctx: S3ErrorContext = {
    dataset: spec.name,
    uri: spec.uri,
    bucket,
    versionId: spec.versionId,
    endpoint: client.endpointLabel,
    anonymous: client.anonymous,
    action: "reading",
    retries: retry.retries ?? DEFAULT_RETRIES,
  };
  if (target !== "object-or-prefix") {
    const prefix = target === "bucket" ? "" : key;
    const folder = await listPrefix(spec, client, prefix, ctx, retry);
    if (folder === undefined) {
      throw new DsfetchError("NOT_FOUND", `${spec.name}: there are no objects under ${spec.uri}`, {
        dataset: spec.name,
        hint: "check the bucket and prefix; an empty folder is not a dataset",
      });
    }
    return folder;
  }

  let head: ResolvedObject;
  try {
    head = await headObject(spec, client, ctx, retry);
  } catch (error) {
    if (
      spec.versionId !== undefined &&
      error instanceof DsfetchError &&
      (error.code === "NOT_FOUND" || error.code === "NO_SUCH_VERSION")
    ) {
      // A folder named without its "/": "no such version" would send the user looking for a
      // version that cannot exist (review, 2026-12-05). Only on this failing path: one LIST.
      const folder = await listPrefix(spec, client, `${key}/`, ctx, retry).catch(() => undefined);
      if (folder !== undefined) {
        throw new DsfetchError(
          "CONFIG_INVALID",
          `${spec.name}: "versionId" applies to a single object only, but ${spec.uri} is a folder (${folder.objects.length} objects under ${spec.uri}/)`,
          { dataset: spec.name, hint: 'remove "versionId", or point "uri" at one object' },
        );
      }
      throw error;
    }
    if (!(error instanceof DsfetchError) || error.code !== "NOT_FOUND") {
      throw error;
    }
    // No such object: maybe `key` names a folder (`key/`). A listing that is itself "not
    // found" (an endpoint that answers 404 to everything, a bucket gone) is the object's
    // error: it read "<uri>/ does not exist", a folder, for an object pinned by its etag
    // (exploratory review, 2026-12-07).
    const folder = await listPrefix(spec, client, `${key}/`, ctx, retry).catch(
      (listError: unknown) => {
        if (listError instanceof DsfetchError && listError.code === "NOT_FOUND") throw error;
        throw listError;
      },
    );
    if (folder === undefined) {
      throw new DsfetchError(
        "NOT_FOUND",
        `${spec.name}: ${spec.uri} does not exist: there is no such object and no objects under ${spec.uri}/`,
        {
          dataset: spec.name,
          hint: "check the bucket and key; `aws s3 ls` on the parent prefix lists what is there",
        },
      );
    }
    if (spec.etag !== undefined) {
      throw new DsfetchError(
        "CONFIG_INVALID",
        `${spec.name}: "etag" applies to a single object only, but ${spec.uri} is a folder (${folder.objects.length} objects under ${spec.uri}/)`,
        { dataset: spec.name, hint: 'remove "etag", or point "uri" at one object' },
      );
    }
    return folder;
  }
  checkExpectations(spec, head);
  return head;
}

function headObject(
  spec: DatasetSpec,
  client: StoreClient,
  ctx: S3ErrorContext,
  retry: RetryOptions,
): Promise<ResolvedObject> {
  const { bucket, key } = spec.location;
  return headObjectAt(
    { bucket, key, versionId: spec.versionId, dataset: spec.name, uri: spec.uri },
    client,
    ctx,
    retry,
  );
}

/** One object, as HEAD (with ChecksumMode) shows it; `dataset` and `uri` for messages. */
export interface ObjectToHead {
  readonly bucket: string;
  readonly key: string;
  readonly versionId: string | undefined;
  readonly dataset: string;
  readonly uri: string;
}

/**
 * HEAD of one object: its ETag and size, and what proves its bytes (its encryption, its S3
 * additional checksum). Also for the large objects of a folder, whose listing says neither.
 */
export async function headObjectAt(
  target: ObjectToHead,
  client: StoreClient,
  ctx: S3ErrorContext,
  retry: RetryOptions,
): Promise<ResolvedObject> {
  const { bucket, key } = target;
  const spec = { name: target.dataset, uri: target.uri, versionId: target.versionId };
  // Our own signed HEAD (object-get.ts), not the SDK's: an object dataset then never loads
  // the SDK (~60 ms and ~25 MiB per process; 16 workers start at once).
  const head = (checksumMode: boolean) =>
    withRetry(async () => {
      try {
        return await client.getter.head({
          bucket,
          key,
          versionId: spec.versionId,
          checksumMode,
          signal: retry.signal,
        });
      } catch (error) {
        throw classifyS3Error(error, ctx);
      }
    }, retry);
  let output: HeadResponse;
  // A store found to refuse ChecksumMode is not asked with it again (two HEADs per object on
  // Backblaze B2: interop review, 2026-12-06).
  let checksumRefused = checksumModeRefused(client.getter);
  if (checksumRefused !== undefined) output = await head(false);
  else {
    try {
      // ChecksumMode asks for the stored S3 additional checksums (SPEC §4).
      output = await head(true);
    } catch (error) {
      // Reading the checksum of an SSE-KMS object also needs kms:Decrypt: a role allowed to
      // HEAD but not to decrypt must still get the plain answer (and a clear 403 on the GET
      // later). A store that does not know the header may answer 400 (NO_SUCH_VERSION with a
      // versionId) or 501: the plain HEAD then says what is really there.
      const reason = checksumModeRefusal(error);
      if (reason === undefined) throw error;
      output = await head(false);
      checksumRefused = reason;
      // Remembered for the store only when the answer says it does not know the header.
      rememberChecksumModeRefused(client.getter, reason, error);
    }
  }
  const header = (name: string) => output.headers[name];
  if (header("x-amz-delete-marker") === "true") {
    throw new DsfetchError("DELETE_MARKER", `${spec.name}: ${spec.uri} is a delete marker`, {
      dataset: spec.name,
      hint: 'give the "versionId" of a version from before the delete',
    });
  }
  const archived = archivedState(header);
  if (archived !== undefined && (await refusesReads(client, target))) {
    // Said now, before the lock and any download (and by `plan`): its GET would be refused
    // (403 InvalidObjectState, s3-errors.ts) only once a worker took the lock and started.
    throw new DsfetchError(
      "OBJECT_ARCHIVED",
      `${spec.name}: ${spec.uri}${spec.versionId === undefined ? "" : ` version ${spec.versionId}`} is archived (${archived}) and cannot be read until it is restored`,
      {
        dataset: spec.name,
        hint: archived.includes("being restored")
          ? "wait until the restore is done (minutes to hours), then run again"
          : "restore it first (`aws s3api restore-object --bucket <bucket> --key <key> --restore-request Days=7`; S3 Batch Operations for a whole folder), wait until the restore is done (minutes to hours), then run again; or copy it to a storage class read at once (STANDARD, GLACIER_IR)",
      },
    );
  }
  const etagText = header("etag");
  const lengthText = header("content-length");
  const length = Number(lengthText);
  // Digits only: "-1" or "1e9" from a broken store or proxy published an empty file once
  // (review, 2026-12-05), and a negative size broke the hashing (INTERNAL).
  if (
    etagText === undefined ||
    lengthText === undefined ||
    !/^\s*\d+\s*$/.test(lengthText) ||
    !Number.isSafeInteger(length)
  ) {
    throw new DsfetchError(
      "S3_ERROR",
      `${spec.name}: the store sent no ${etagText === undefined ? "ETag" : "valid Content-Length"} for ${spec.uri}`,
      {
        dataset: spec.name,
        // A web page (a captive portal, a web server, a wrong endpoint URL) answers 200 with
        // HTML and no ETag: said as what it is (exploratory review, 2026-12-07).
        hint: /^\s*text\/html/i.test(header("content-type") ?? "")
          ? `the endpoint ${client.endpointLabel} answered with a web page (text/html), not as S3 does: check the endpoint URL (a proxy or captive portal may be answering)`
          : "this store is not S3-compatible enough for dsfetch to verify data",
      },
    );
  }
  const etag = normalizeEtag(etagText);
  const versionId = header("x-amz-version-id");
  // A pinned version must be the one answered: a store without versioning (or a proxy that
  // drops the query) ignores ?versionId= and answers the latest version without the header,
  // which was published as the pinned version, verified, exit 0 (interop review, 2026-12-06).
  // AWS and MinIO name the version they answer; "null" (an object written before versioning)
  // may come without the header.
  if (
    target.versionId !== undefined &&
    (versionId === undefined ? target.versionId !== "null" : versionId.trim() !== target.versionId)
  ) {
    throw new DsfetchError(
      "NO_SUCH_VERSION",
      versionId === undefined
        ? `${spec.name}: asked for version ${target.versionId} of ${spec.uri}, but the store did not say which version it answered (no x-amz-version-id): it may not support versioning, and would send the latest version`
        : `${spec.name}: asked for version ${target.versionId} of ${spec.uri} but the store answered with version ${versionId.trim()}`,
      {
        dataset: spec.name,
        expected: target.versionId,
        found: versionId?.trim() ?? "none",
        hint:
          versionId === undefined
            ? 'check that this store and bucket support versioning (`aws s3api get-bucket-versioning`); without it, pin the object by "etag" instead of "versionId"'
            : "check the versionId: `aws s3api list-object-versions` lists the versions that exist",
      },
    );
  }
  const modified = header("last-modified");
  const modifiedDate = modified === undefined ? undefined : new Date(modified);
  return {
    kind: "object",
    bucket,
    key,
    etag,
    // A pinned "null" (an object written before versioning was enabled) stays the version
    // asked for: mapped to none, the GETs asked for the latest version, and If-Match with the
    // null version's ETag answered 412 at every run once a newer version existed (review of
    // the interop fixes, 2026-12-06).
    versionId:
      target.versionId === "null"
        ? "null"
        : versionId === undefined || versionId === "null"
          ? undefined
          : versionId,
    bytes: length,
    lastModified:
      modifiedDate === undefined || Number.isNaN(modifiedDate.getTime())
        ? undefined
        : modifiedDate.toISOString(),
    encryption: encryptionOf(header),
    ...checksums(checksumHeaders(header), etag, checksumRefused),
  };
}

/**
 * Whether a read of the object's first byte is refused as archived (403 InvalidObjectState).
 * Asked only when its HEAD says archived: a store may name a readable tier so (MinIO and Ceph
 * tiers have names of their owners' choosing), and such an object must still be staged.
 */
async function refusesReads(client: StoreClient, target: ObjectToHead): Promise<boolean> {
  try {
    const response = await client.getter.get({
      bucket: target.bucket,
      key: target.key,
      versionId: target.versionId,
      range: { start: 0, end: 0 },
    });
    response.discard();
    return false;
  } catch (error) {
    return (error as { Code?: unknown }).Code === "InvalidObjectState";
  }
}

/**
 * Why an object cannot be read as it is, from its HEAD (AWS documents these headers), or
 * undefined: in S3 Glacier Flexible Retrieval or Deep Archive without a finished restore
 * (`x-amz-restore: ongoing-request="false", …`), or in an Intelligent-Tiering archive tier
 * (`x-amz-archive-status`). GLACIER_IR is read at once.
 */
export function archivedState(header: (name: string) => string | undefined): string | undefined {
  const storageClass = header("x-amz-storage-class")?.trim().toUpperCase();
  const tier = header("x-amz-archive-status")?.trim().toUpperCase();
  const restore = header("x-amz-restore") ?? "";
  const restored = /ongoing-request\s*=\s*"?false"?/i.test(restore);
  const restoring = /ongoing-request\s*=\s*"?true"?/i.test(restore);
  const where =
    storageClass === "GLACIER"
      ? "storage class GLACIER, S3 Glacier Flexible Retrieval"
      : storageClass === "DEEP_ARCHIVE"
        ? "storage class DEEP_ARCHIVE, S3 Glacier Deep Archive"
        : tier === "ARCHIVE_ACCESS" || tier === "DEEP_ARCHIVE_ACCESS"
          ? `Intelligent-Tiering ${tier}`
          : undefined;
  if (where === undefined || restored) return undefined;
  return restoring ? `${where}; being restored` : where;
}

function checksums(
  fields: ChecksumFields,
  etag: string,
  refused: string | undefined,
): { checksum: ObjectChecksum | undefined; checksumRejected: string[] } {
  if (refused !== undefined) return { checksum: undefined, checksumRejected: [refused] };
  const { checksum, rejected } = chooseChecksum(fields, etagPartCount(etag));
  return { checksum, checksumRejected: rejected };
}

/**
 * What to do about a pinned ETag the store does not have. A plain MD5 pinned where the store's
 * ETag is a multipart one (`<hex>-N`) is most likely `md5sum` of the uploaded file, which no
 * multipart ETag ever equals: "the object was replaced" sent users looking for a change that
 * never happened (exploratory review, 2026-12-07).
 */
function etagMismatchHint(spec: DatasetSpec, found: string): string {
  if (spec.versionId !== undefined) {
    return `version ${spec.versionId} does not have this ETag: one of the two pins is wrong; check "etag" and "versionId" against the version you mean`;
  }
  const parts = etagPartCount(found);
  if (parts !== undefined && spec.etag !== undefined && /^[0-9a-f]{32}$/i.test(spec.etag)) {
    return `the store's ETag is a multipart upload's (${parts} parts), which is not the MD5 of the file (md5sum of it never matches): pin the ETag the store gives (aws s3api head-object), or "versionId"`;
  }
  return 'the object was replaced since the datasets array was written; update "etag" (or pin "versionId") after checking the new object';
}

function checkExpectations(spec: DatasetSpec, head: ResolvedObject): void {
  if (spec.etag !== undefined && spec.etag !== head.etag) {
    throw new DsfetchError(
      "ETAG_MISMATCH",
      `${spec.name}: ETag mismatch for ${spec.uri}: expected ${spec.etag}, the store has ${head.etag}`,
      {
        dataset: spec.name,
        expected: spec.etag,
        found: head.etag,
        hint: etagMismatchHint(spec, head.etag),
      },
    );
  }
  if (
    spec.versionId !== undefined &&
    head.versionId !== undefined &&
    head.versionId !== spec.versionId
  ) {
    throw new DsfetchError(
      "NO_SUCH_VERSION",
      `${spec.name}: asked for version ${spec.versionId} of ${spec.uri} but the store answered with version ${head.versionId}`,
      { dataset: spec.name, expected: spec.versionId, found: head.versionId },
    );
  }
}

/**
 * Makes the objects of a listing under `prefix`: three fields each (48 B of heap with Node's
 * 8-byte fields), the path under the prefix sliced from the key when asked for. A literal with
 * that path beside the key was 56 B, and the path a sliced string of 32 B, for as long as the
 * folder is staged: 40 B per object more (heap snapshots at the end of a 100,000-object
 * folder's download; memory review of folders, 2026-12-06, test/fetch/folder-memory.test.ts).
 * One class per listing: the prefix is the class's, not a field of every object. An object of
 * a listing without ETags keeps its LastModified too; one whose ETag is an MD5 keeps it as
 * four 32-bit words (ListedMd5: 157 -> 132 B per object in all, folder-memory.test.ts).
 */
function listedUnder(
  prefix: string,
): (key: string, bytes: number, etag: string, lastModified: string | undefined) => ListedObject {
  const start = prefix.length;
  class Listed implements ListedObject {
    readonly key: string;
    readonly bytes: number;
    readonly etag: string;
    constructor(key: string, bytes: number, etag: string) {
      this.key = key;
      this.bytes = bytes;
      this.etag = etag;
    }
    get relativePath(): string {
      return this.key.slice(start);
    }
  }
  class ListedWithoutEtag extends Listed {
    readonly lastModified: string;
    constructor(key: string, bytes: number, lastModified: string) {
      super(key, bytes, "");
      this.lastModified = lastModified;
    }
  }
  /**
   * An object whose ETag is an MD5 in lower-case hex (every single-part object not encrypted
   * with KMS or a customer key): the ETag as four 32-bit words, inline, and made again when
   * asked for; its string was 48 B of heap per object beside its field.
   */
  class ListedMd5 implements ListedObject {
    readonly key: string;
    readonly bytes: number;
    private readonly w0: number;
    private readonly w1: number;
    private readonly w2: number;
    private readonly w3: number;
    constructor(key: string, bytes: number, etag: string) {
      this.key = key;
      this.bytes = bytes;
      this.w0 = Number.parseInt(etag.slice(0, 8), 16) | 0;
      this.w1 = Number.parseInt(etag.slice(8, 16), 16) | 0;
      this.w2 = Number.parseInt(etag.slice(16, 24), 16) | 0;
      this.w3 = Number.parseInt(etag.slice(24, 32), 16) | 0;
    }
    /** Made again at each read (~10 per object in a folder's fetch): ~0.17 us each. */
    get etag(): string {
      ETAG_BYTES.writeInt32BE(this.w0, 0);
      ETAG_BYTES.writeInt32BE(this.w1, 4);
      ETAG_BYTES.writeInt32BE(this.w2, 8);
      ETAG_BYTES.writeInt32BE(this.w3, 12);
      return ETAG_BYTES.toString("hex");
    }
    get relativePath(): string {
      return this.key.slice(start);
    }
  }
  return (key, bytes, etag, lastModified) => {
    if (etag === "") return new ListedWithoutEtag(key, bytes, lastModified ?? "");
    return MD5_HEX.test(etag) ? new ListedMd5(key, bytes, etag) : new Listed(key, bytes, etag);
  };
}

const MD5_HEX = /^[0-9a-f]{32}$/;

/**
 * Where ListedMd5 puts its words back together. Four toString(16) and three concatenations
 * took ~1.5 us a read, and gave a string to flatten at its first comparison (review: ~13 us
 * of the main thread per object of a folder, a listing digest of 1.28 M objects ~3 s).
 */
const ETAG_BYTES = Buffer.alloc(16);

async function listPrefix(
  spec: DatasetSpec,
  client: StoreClient,
  prefix: string,
  ctx: S3ErrorContext,
  retry: RetryOptions,
): Promise<ResolvedPrefix | undefined> {
  const { bucket } = spec.location;
  const listCtx = { ...ctx, uri: formatS3Uri({ bucket, key: prefix }), action: "listing" };
  const fetchPage: PageFetcher = ({ signal: attempt, ...request }) => {
    // A request of a listing attempt that failed elsewhere stops, its retries too.
    const signals = [retry.signal, attempt].filter((one) => one !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    return withRetry(
      async () => {
        try {
          return await listObjectsPage(client.getter, { bucket, ...request, signal });
        } catch (error) {
          throw classifyS3Error(error, listCtx);
        }
      },
      { ...retry, signal },
    );
  };
  const listed = listedUnder(prefix);
  const twice = (key: string) =>
    new DsfetchError(
      "S3_ERROR",
      `${spec.name}: the listing of ${listCtx.uri} names the key ${JSON.stringify(key)} twice`,
      {
        dataset: spec.name,
        hint: "the store (or a proxy before it) answered an inconsistent listing; run again, and if it persists check the store",
      },
    );
  const converter = () => {
    // Directory markers are dropped here, so a marker listed twice is caught here (they are
    // few); the objects are checked once the listing is whole, below.
    const markers = new Set<string>();
    return (item: ListedEntry): ListedObject | undefined => {
      // "Directory marker" keys (consoles create them for empty folders) hold no data.
      if (item.key.endsWith("/") && item.size === 0) {
        if (markers.has(item.key)) throw twice(item.key);
        markers.add(item.key);
        return undefined;
      }
      return listed(item.key, item.size, normalizeEtag(item.etag), item.lastModified);
    };
  };
  // Several requests at once where the folder has directories (list-tree.ts), in the order
  // of one listing.
  const objects = await listTree(prefix, fetchPage, converter, {
    concurrency: LISTING_CONCURRENCY,
    plainAfter: (error) =>
      retry.signal?.aborted !== true &&
      !(
        error instanceof DsfetchError &&
        (error.code === "TRANSIENT" || error.code === "INTERRUPTED")
      ),
  });
  const digest = createHash("sha256");
  let bytes = 0;
  // A key listed twice (a store or proxy that repeats a page's entry) would be written twice:
  // the second create failed as STORAGE EEXIST with a hint about the mount (review,
  // 2026-12-05). The listing is the store's fault, and said so. Keys that rise strictly
  // (JavaScript's `<`, a strict order: a store lists in UTF-8 byte order, which agrees with it
  // but between characters above U+FFFF and U+E000-U+FFFF) are all different; only a listing
  // that does not rise is looked through with a set. A set of every key as it arrived took
  // ~1.7 us per object: 2.2 of the 14.8 s of a warm check of 1,280,000 objects (the peak RSS
  // stayed where it was, ~470 MiB at the listing's end).
  let rising = true;
  let previous: string | undefined;
  for (const object of objects) {
    if (previous !== undefined && !(previous < object.key)) rising = false;
    previous = object.key;
    // Unchanged where the listing has ETags (copies staged before compare equal).
    const changed = object.etag === "" ? `\t${object.lastModified ?? ""}` : "";
    digest.update(`${object.key}\t${object.bytes}\t${object.etag}${changed}\n`);
    bytes += object.bytes;
  }
  if (!rising) {
    const seen = new Set<string>();
    for (const { key } of objects) {
      if (seen.has(key)) throw twice(key);
      seen.add(key);
    }
  }

  if (objects.length === 0) return undefined;
  return {
    kind: "prefix",
    bucket,
    prefix,
    objects,
    bytes,
    listingDigest: digest.digest("hex"),
  };
}
