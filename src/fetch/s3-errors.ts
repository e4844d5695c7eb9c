/**
 * The one place that decides what an S3 failure means: which DsfetchError code, whether it
 * is worth retrying, and what the user should do. Permanent errors (400, 403, 404,
 * NoSuchVersion, delete marker, ETag mismatch) are never retried (SPEC §8).
 */
import { DsfetchError, type ErrorCode } from "../errors.ts";
import { DEFAULT_RETRIES } from "./retry.ts";
import { caBundleContents } from "./tls-module.ts";

export interface S3ErrorContext {
  dataset: string;
  /** `s3://bucket/key` of the request. */
  uri: string;
  bucket: string;
  versionId?: string | undefined;
  /** Endpoint label for messages. */
  endpoint: string;
  anonymous: boolean;
  /** What we were doing: "reading", "listing", … */
  action: string;
  /** Retries allowed after a first attempt (DSFETCH_RETRIES), for the hints that say so. */
  retries?: number | undefined;
}

/** How a failure that was retried until the end was retried, in words, for its hint. */
function retriedWords(ctx: S3ErrorContext): string {
  if (ctx.retries === 0) return "not retried: DSFETCH_RETRIES=0";
  if (ctx.retries !== undefined) return `retried up to ${ctx.retries} times: DSFETCH_RETRIES`;
  return `retried up to DSFETCH_RETRIES times, ${DEFAULT_RETRIES} unless set`;
}

interface SdkErrorShape {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string | undefined> };
}

const TRANSIENT_NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "UND_ERR_SOCKET",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

const TRANSIENT_S3_CODES = new Set([
  "SlowDown",
  "InternalError",
  "ServiceUnavailable",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "TimeoutError",
  "RequestTimeoutException",
  "ThrottlingException",
  "Throttling",
  "XMinioServerNotInitialized",
]);

/** The response headers an error carries, if any. */
function headersOf(error: unknown): Record<string, string | undefined> {
  const e = (typeof error === "object" && error !== null ? error : {}) as SdkErrorShape;
  return e.$response?.headers ?? {};
}

/**
 * A header of the store's answer that an error (or the error it was classified from: its
 * `cause`, a few levels deep) carries: `retry-after` of a 503 SlowDown, for the retry policy.
 */
export function answerHeaderOf(error: unknown, name: string): string | undefined {
  let at: unknown = error;
  for (let depth = 0; depth < 4 && typeof at === "object" && at !== null; depth++) {
    const value = headersOf(at)[name];
    if (value !== undefined) return value;
    at = (at as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * An answer S3 would not send (a listing that contradicts itself, a broken header), as its
 * message says it: two attempts that got the same one are a store that always answers so,
 * not a glitch on the way (retry.ts stops retrying it: interop review, 2026-12-06).
 */
export function malformedAnswerOf(error: unknown): string | undefined {
  let at: unknown = error;
  for (let depth = 0; depth < 4 && typeof at === "object" && at !== null; depth++) {
    const { name, message, code } = at as { name?: unknown; message?: unknown; code?: unknown };
    if ((name === "MalformedListing" || code === "EPROTO") && typeof message === "string") {
      return message;
    }
    at = (at as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Errors of a request with ChecksumMode (`x-amz-checksum-mode: ENABLED`) after which the same
 * request is made without it: a store that does not know the header answers 400 (Backblaze
 * B2: `400 InvalidArgument: Unsupported header 'x-amz-checksum-mode'`, vatesfr/xen-orchestra#
 * 8358; NO_SUCH_VERSION when a versionId is given) or 501 NotImplemented; reading the checksum
 * of an SSE-KMS object also needs kms:Decrypt (403). The HEAD of an object (resolve.ts) and
 * the GET of a folder's small object (download-prefix.ts) use it alike.
 */
export const CHECKSUM_MODE_REFUSALS: ReadonlySet<string> = new Set([
  "ACCESS_DENIED",
  "NO_SUCH_VERSION",
  "S3_ERROR",
]);

/**
 * What a verification says when the store refused ChecksumMode for `error`, or undefined when
 * `error` is no such refusal (retryable failures neither: an outage, not an answer).
 */
export function checksumModeRefusal(error: unknown): string | undefined {
  if (!(error instanceof DsfetchError) || error.retryable) return undefined;
  if (!CHECKSUM_MODE_REFUSALS.has(error.code)) return undefined;
  return error.code === "ACCESS_DENIED"
    ? "the store denied access to the object's checksums (ChecksumMode)"
    : `the store refused ChecksumMode (${error.code})`;
}

/**
 * Stores (by their client's getter) found to refuse ChecksumMode on a request that succeeded
 * without it, with what the verification says: their later requests go without it (a folder
 * of 20,000 small objects on Backblaze B2 would otherwise be 40,000 requests).
 */
const checksumModeRefusedBy = new WeakMap<object, string>();

/** Why `store` gets no ChecksumMode any more, or undefined while it does. */
export function checksumModeRefused(store: object): string | undefined {
  return checksumModeRefusedBy.get(store);
}

/**
 * The answers that say the store does not know the header itself, as B2 answered (400
 * InvalidArgument "Unsupported header"), or a HEAD's bare 400, or 501: only these are
 * remembered for the store. Any other refusal followed by a plain request that worked (a
 * glitch, a proxy's or DNS error, ContentTransformed) was remembered too, and every later
 * dataset on that client went without checksums, its verification saying the store refused
 * them (review of the interop fixes, 2026-12-06).
 */
const HEADER_REJECTIONS: ReadonlySet<string> = new Set([
  "InvalidArgument",
  "InvalidRequest",
  "NotImplemented",
  "BadRequest",
  "Http501",
]);

/**
 * Records that `store` refused ChecksumMode with `error` (a request without it then
 * succeeded), when `error` says the store does not know the header: a 400 or 501 of the kinds
 * above, not a denial (403: may be about one object's SSE-KMS key).
 */
export function rememberChecksumModeRefused(store: object, reason: string, error: unknown): void {
  const original = error instanceof DsfetchError && error.cause !== undefined ? error.cause : error;
  const { code, status } = shapeOf(original);
  if ((status !== 400 && status !== 501) || !HEADER_REJECTIONS.has(code)) return;
  if (checksumModeRefusedBy.has(store)) return;
  // Twice, before the store is taken to refuse it for good: a HEAD's 400 has no body to say
  // why, and one glitch (a proxy's) must not take checksums from every later dataset.
  const seen = (checksumModeRefusals.get(store) ?? 0) + 1;
  checksumModeRefusals.set(store, seen);
  if (seen >= 2) checksumModeRefusedBy.set(store, reason);
}

/** Refusals seen per store before it is remembered (rememberChecksumModeRefused). */
const checksumModeRefusals = new WeakMap<object, number>();

/** Extracts what the SDK tells us; works on plain errors too. */
function shapeOf(error: unknown): {
  code: string;
  status: number | undefined;
  deleteMarker: boolean;
  message: string;
} {
  const e = (typeof error === "object" && error !== null ? error : {}) as SdkErrorShape;
  const nodeCode = (error as NodeJS.ErrnoException | undefined)?.code;
  const code = e.Code ?? (typeof nodeCode === "string" ? nodeCode : undefined) ?? e.name ?? "Error";
  const headers = e.$response?.headers ?? {};
  return {
    code,
    status: e.$metadata?.httpStatusCode,
    deleteMarker: headers["x-amz-delete-marker"] === "true",
    message: typeof e.message === "string" ? e.message : String(error),
  };
}

/**
 * Node's codes for a certificate it does not trust (review, 2026-12-05: a self-signed
 * store's error advised running Node with --use-system-ca, which a dsfetch user cannot do).
 */
const TLS_CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** The codes of a certificate no trusted certificate authority issued (not its dates, nor its names). */
const TLS_UNTRUSTED_ISSUER_CODES: ReadonlySet<string> = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
]);

/**
 * What AWS_CA_BUNDLE did for a certificate no trusted authority issued: its file holds no
 * certificate, or none of its certificates issued that one. Said with the file and what it
 * holds: "give the certificate authority in AWS_CA_BUNDLE" was all a user with the bundle set
 * was told (exploratory review, 2026-12-07). Undefined without AWS_CA_BUNDLE.
 */
function caBundleWords(
  code: string,
  endpoint: string,
  env: NodeJS.ProcessEnv = process.env,
): { text: string; hint: string } | undefined {
  const path = env.AWS_CA_BUNDLE;
  if (path === undefined || path === "" || !TLS_UNTRUSTED_ISSUER_CODES.has(code)) return undefined;
  const contents = caBundleContents(path);
  if (contents === undefined) return undefined;
  const url = URL.canParse(endpoint) ? new URL(endpoint) : undefined;
  const showIssuer =
    url === undefined
      ? ""
      : ` (\`openssl s_client -showcerts -connect ${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")} </dev/null\` shows the chain it sends and who issued it)`;
  const { subjects, derSubject } = contents;
  if (derSubject !== undefined) {
    return {
      text: `AWS_CA_BUNDLE (${path}) holds no PEM certificate: it is one certificate in DER (binary) form (${derSubject}), which is not read, so only Node's default certificate authorities were trusted`,
      hint: `convert it to PEM and point AWS_CA_BUNDLE at that file: openssl x509 -inform der -in ${path} -out ca.pem`,
    };
  }
  if (subjects.length === 0) {
    return {
      text: `AWS_CA_BUNDLE (${path}) holds no certificate (no PEM "-----BEGIN CERTIFICATE-----" block), so only Node's default certificate authorities were trusted`,
      hint: `put the PEM certificate of the certificate authority that issued the store's certificate in ${path}, or point AWS_CA_BUNDLE at the file that holds it${showIssuer}`,
    };
  }
  const count = `${subjects.length} certificate${subjects.length === 1 ? "" : "s"}`;
  const named = subjects.slice(0, 3).join("; ") + (subjects.length > 3 ? "; …" : "");
  return {
    text: `its certificate was not issued by any of the ${count} in AWS_CA_BUNDLE (${path}: ${named}), nor by Node's default certificate authorities`,
    hint: `add the certificate authority that issued the store's certificate to ${path}${showIssuer}, or fix the store's certificate`,
  };
}

/** Whether an S3 or network failure may succeed when tried again. */
export function isRetryableS3Error(error: unknown): boolean {
  if (error instanceof DsfetchError) return error.retryable;
  if ((error as { code?: unknown } | undefined)?.code === "EPROXY") {
    return (error as { retryable?: unknown }).retryable === true;
  }
  const { code, status } = shapeOf(error);
  if (TRANSIENT_S3_CODES.has(code) || TRANSIENT_NETWORK_CODES.has(code)) return true;
  // 501 Not Implemented is an answer, not an outage: retrying cannot change it.
  if (status !== undefined) {
    return (status >= 500 && status !== 501) || status === 429 || status === 408;
  }
  // No HTTP status: the request never got an answer (socket errors the SDK wraps).
  return /socket hang up|ECONNRESET|network|timed? ?out/i.test(shapeOf(error).message);
}

/** Turns an SDK error into a DsfetchError with code, retryability and advice. */
export function classifyS3Error(error: unknown, ctx: S3ErrorContext): DsfetchError {
  if (error instanceof DsfetchError) return error;
  const { code, status, deleteMarker, message } = shapeOf(error);
  const make = (errorCode: ErrorCode, text: string, hint: string, retryable = false) =>
    new DsfetchError(errorCode, `${ctx.dataset}: ${text}`, {
      dataset: ctx.dataset,
      hint,
      retryable,
      cause: error,
    });
  const statusText = `${status ?? "no status"} ${code}`;
  const versionText = ctx.versionId === undefined ? "" : ` version ${ctx.versionId}`;

  if (deleteMarker) {
    return make(
      "DELETE_MARKER",
      `${ctx.uri}${versionText} is deleted: ${ctx.versionId === undefined ? "its latest version is a delete marker" : "that version is a delete marker"} (${statusText})`,
      'give the "versionId" of a version from before the delete to fetch it',
    );
  }
  const said = headersOf(error)["x-amz-bucket-region"]?.trim();
  const named = said !== undefined && /^[a-z0-9][a-z0-9-]{0,62}$/.test(said) ? said : undefined;
  if (
    status === 301 ||
    status === 307 ||
    code === "PermanentRedirect" ||
    // Also a malformed credential ("the Credential is mal-formed"): only when about a region.
    (code === "AuthorizationHeaderMalformed" && (named !== undefined || /region/i.test(message)))
  ) {
    // Followed once where the answer names the region (region-redirect.ts); this is what is
    // left: no region named, or the one named refused too. Before the versionId branch: with
    // a versionId a 400 read "no such version".
    return make(
      "S3_ERROR",
      `bucket "${ctx.bucket}" is in another region than the requests were signed for${named === undefined ? "" : ` (the store says ${named})`} (${statusText})`,
      `give the bucket's region in the dataset's "region" (or AWS_REGION)${named === undefined ? "" : `: "region": "${named}"`}`,
    );
  }
  if (code === "EPROXY") {
    // The HTTP proxy (HTTPS_PROXY…, proxy.ts) refused the tunnel or broke off: about the
    // proxy, not the store.
    const proxy = error as { retryable?: boolean; authentication?: string };
    return make(
      proxy.retryable === true ? "TRANSIENT" : "S3_ERROR",
      `${ctx.action} ${ctx.uri} failed: ${message}`,
      proxy.authentication === "missing"
        ? "the proxy wants credentials: give them in the proxy variable (http://user:password@host:port)"
        : proxy.authentication === "refused"
          ? "the proxy refused the credentials in the proxy variable (or wants another scheme than Basic): check them"
          : "check the proxy variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY): the proxy must be reachable and allow connections to the store's host and port, or the store must be in NO_PROXY",
      proxy.retryable === true,
    );
  }
  if (code === "ENOTFOUND") {
    return make(
      "S3_ERROR",
      `${ctx.action} ${ctx.uri} failed: the host of ${ctx.endpoint} does not resolve (${code})`,
      `check the endpoint (AWS_ENDPOINT_URL or the dataset's "endpoint") and the region`,
    );
  }
  if (
    code === "EPROTO" &&
    /wrong version number|packet length too long|http request/i.test(message)
  ) {
    return make(
      "S3_ERROR",
      `${ctx.action} ${ctx.uri} failed: ${ctx.endpoint} does not answer in TLS (${code})`,
      'the endpoint is plain HTTP: give it as http://… (the dataset\'s "endpoint", or AWS_ENDPOINT_URL)',
    );
  }
  if (code === "VersionIgnored") {
    // object-get.ts: a store answering another version than the versionId asked for.
    return make(
      "NO_SUCH_VERSION",
      `${ctx.action} ${ctx.uri}${versionText}: ${message}`,
      ctx.versionId !== undefined && upperCaseUuid(ctx.versionId)
        ? // MinIO answers the latest version for a versionId it does not know, and its IDs
          // are lower-case UUIDs: one pasted upper-case was said to be "no versioning"
          // (exploratory review). Only a UUID: AWS's IDs are mixed-case by nature.
          `version IDs are case-sensitive, and this one has upper-case letters: MinIO's are lower-case UUIDs ("${ctx.versionId.toLowerCase()}"?); or the store does not serve versions by versionId: pin the object by "etag" instead`
        : 'the store does not serve versions by versionId (no versioning, or a proxy dropping the query): pin the object by "etag" instead of "versionId"',
    );
  }
  if (code === "ContentTransformed") {
    // object-get.ts: the store (GCS's decompressive transcoding) or a proxy changed the bytes
    // on the way; the same at every request (interop review, 2026-12-06).
    return make(
      "S3_ERROR",
      `${ctx.action} ${ctx.uri} failed: ${message}`,
      "an object stored compressed (Content-Encoding: gzip) is decompressed on the way: on Google Cloud Storage give the endpoint as https://storage.googleapis.com (dsfetch then asks for the stored bytes); else look at the proxy or gateway in front of the store",
    );
  }
  if (code === "MalformedListing" || code === "EPROTO") {
    // An answer that is not what S3 sends (a truncated listing, a broken header): a proxy or
    // load balancer's glitch as often as the store's. Retried; once every retry got one, the
    // store is said to be the cause, not the URI (it said "the store refused the request;
    // check the URI, endpoint and region": review, 2026-12-05).
    return make(
      "S3_ERROR",
      `${ctx.action} ${ctx.uri} failed: ${message}`,
      `the store at ${ctx.endpoint} (or a proxy before it) sent an answer S3 would not (${retriedWords(ctx)}; the same answer three times in a row is not retried again); if it persists, check what answers there`,
      true,
    );
  }
  if (TLS_CERTIFICATE_CODES.has(code)) {
    // Node's own text ends with advice for Node's command line (--use-system-ca): not ours.
    const reason = message.replace(/;\s*if the root CA is installed locally.*$/i, "");
    const bundle = caBundleWords(code, ctx.endpoint);
    return make(
      "S3_ERROR",
      `${ctx.action} ${ctx.uri} failed: the TLS certificate of ${ctx.endpoint} is not trusted: ${reason} (${code})${bundle === undefined ? "" : `; ${bundle.text}`}`,
      bundle?.hint ??
        "give the certificate authority of the store in AWS_CA_BUNDLE (a PEM file; NODE_EXTRA_CA_CERTS works too), or fix the store's certificate",
    );
  }
  if (code === "NoSuchBucket") {
    return make(
      "NOT_FOUND",
      `bucket "${ctx.bucket}" does not exist at ${ctx.endpoint} (${statusText})`,
      'check the bucket name and the endpoint (AWS_ENDPOINT_URL or the dataset\'s "endpoint")',
    );
  }
  if (code === "InvalidObjectState") {
    // AWS answers a GET of an object in S3 Glacier Flexible Retrieval or Deep Archive (or an
    // Intelligent-Tiering archive tier) that was not restored with 403 InvalidObjectState:
    // taken as any 403, it sent users to their IAM policies. Its HEAD succeeds (with
    // x-amz-storage-class, x-amz-restore, x-amz-archive-status), and a restored one reads as
    // usual, so the listing's storage class alone cannot tell; the GET's answer does.
    return make(
      "OBJECT_ARCHIVED",
      `${ctx.uri}${versionText} is archived (S3 Glacier Flexible Retrieval or Deep Archive, or an Intelligent-Tiering archive tier) and cannot be read until it is restored (${statusText})`,
      "restore it first (`aws s3api restore-object --bucket <bucket> --key <key> --restore-request Days=7`; S3 Batch Operations for a whole folder), wait until the restore is done (minutes to hours), then run again; or copy it to a storage class read at once (STANDARD, GLACIER_IR)",
    );
  }
  // Before the versionId branch (review, 2026-12-06): with a versionId pinned, every 400 read
  // "no such version", an expired session token (400 ExpiredToken) too.
  if (
    status === 403 ||
    status === 401 ||
    [
      "AccessDenied",
      "Forbidden",
      "InvalidAccessKeyId",
      "SignatureDoesNotMatch",
      "ExpiredToken",
      "InvalidToken",
    ].includes(code)
  ) {
    const how = ctx.anonymous
      ? "no credentials were found, so the request was anonymous: give awsAccessKeyId/awsSecretAccessKey or configure the AWS credential chain (a Requester Pays bucket needs credentials: the requester pays)"
      : code === "InvalidAccessKeyId"
        ? "the access key ID is not known to this store: check the dataset's keys and the endpoint"
        : code === "SignatureDoesNotMatch"
          ? "the secret access key is wrong for this access key ID"
          : code === "ExpiredToken"
            ? "the session token has expired: refresh the credentials"
            : 'check that the credentials may read this bucket (bucket policy, IAM); a Requester Pays bucket also needs "requesterPays": true in the dataset';
    return make("ACCESS_DENIED", `access denied ${ctx.action} ${ctx.uri} (${statusText})`, how);
  }
  if (
    code === "NoSuchVersion" ||
    (ctx.versionId !== undefined &&
      (status === 404 || code === "InvalidArgument" || status === 400))
  ) {
    // A HEAD's 400 has no body to say why: a bad version, or refused credentials (an
    // expired session token answers 400 ExpiredToken), which only a GET would name (review,
    // 2026-12-06).
    const unexplained =
      code === "NoSuchVersion" || code === "InvalidArgument"
        ? ""
        : " (or the request was refused: a 400 without a reason, e.g. an expired session token)";
    return make(
      "NO_SUCH_VERSION",
      `${ctx.uri} has no version ${ctx.versionId ?? "(none given)"}${status === 400 ? unexplained : ""} (${statusText})`,
      status === 400 && unexplained !== ""
        ? "check the versionId (`aws s3api list-object-versions` lists the versions that exist) and that the credentials are still valid"
        : "check the versionId: `aws s3api list-object-versions` lists the versions that exist",
    );
  }
  if (code === "NoSuchKey" || code === "NotFound" || status === 404) {
    return make(
      "NOT_FOUND",
      `${ctx.uri} does not exist (${statusText})`,
      "check the bucket and key; `aws s3 ls` on the parent prefix lists what is there",
    );
  }
  if (status === 412 || code === "PreconditionFailed") {
    return make(
      "OBJECT_CHANGED",
      `${ctx.uri} changed while it was being read (${statusText})`,
      'the object was overwritten; run again to fetch the new version, or pin "versionId"',
    );
  }
  if (isRetryableS3Error(error)) {
    return make(
      "TRANSIENT",
      `${ctx.action} ${ctx.uri} failed: ${statusText}: ${message}`,
      `the store at ${ctx.endpoint} is unreachable or overloaded (${retriedWords(ctx)}); try again later`,
      true,
    );
  }
  return make(
    "S3_ERROR",
    `${ctx.action} ${ctx.uri} failed: ${statusText}: ${message}`,
    status === 400
      ? badRequestHint(ctx.bucket)
      : "the store refused the request; check the URI, endpoint and region",
  );
}

/**
 * A HEAD of a bucket name most stores refuse (MinIO, AWS outside us-east-1's legacy names:
 * 3-63 lowercase letters, digits, "." or "-") answers a bare 400 with no body to say why:
 * name the likely cause (review, 2026-12-05: "s3://zh/x.zip" said only "400 BadRequest").
 */
function badRequestHint(bucket: string): string {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    return `the store refused the request: the bucket name ${JSON.stringify(bucket)} is not valid for most stores (3-63 lowercase letters, digits, "." or "-", starting and ending with a letter or digit); check the URI`;
  }
  return "the store refused the request; check the URI, endpoint and region";
}

/** A UUID written with upper-case letters (MinIO's version IDs are lower-case UUIDs). */
function upperCaseUuid(versionId: string): boolean {
  return (
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(versionId) &&
    versionId !== versionId.toLowerCase()
  );
}
