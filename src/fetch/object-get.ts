/**
 * Signed GET and HEAD requests (LIST is a GET: list-objects.ts) over keep-alive connections
 * (http1.ts). Plain HTTP did 3,200-4,400 small objects/s here against 600-1,000/s through
 * the SDK (../shared/MEASURED.md), and http1.ts reads large bodies with a fraction of
 * node:http's CPU.
 * Failures are thrown in the SDK's error shape so that s3-errors.ts classifies both alike.
 */
import type { ConnectionOptions } from "node:tls";
import type { EndpointOptions } from "../config/types.ts";
import type { ChecksumFields } from "./checksum/index.ts";
import { type BodyConsumer, type BodyTarget, Http1Pool, type Http1Response } from "./http1.ts";
import { proxyFor } from "./proxy.ts";
import { encodeQuery, type SigningCredentials, SigV4Signer, uriEncode } from "./sigv4.ts";

export interface GetRequest {
  readonly bucket: string;
  readonly key: string;
  readonly versionId?: string | undefined;
  /** Inclusive byte range. */
  readonly range?: { readonly start: number; readonly end: number } | undefined;
  /** ETag (unquoted) the object must still have: a changed object answers 412. */
  readonly ifMatch?: string | undefined;
  /**
   * With ifMatch: the Last-Modified its HEAD gave, compared with an answer that carries no
   * ETag (a store that ignores If-Match and names no ETag on reads would otherwise mix two
   * versions unseen: interop review, 2026-12-06).
   */
  readonly lastModified?: string | undefined;
  readonly partNumber?: number | undefined;
  /** More query parameters (a listing's). */
  readonly query?: Readonly<Record<string, string>> | undefined;
  /** Ask for the stored S3 additional checksums (whole-object GETs only: ranges get none). */
  readonly checksumMode?: boolean | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface GetResponse {
  readonly status: number;
  /**
   * Streams the body: `onData` gets views of a reused buffer, valid only during the call
   * (copy what you keep); a promise it returns pauses the connection until it settles.
   * Call it, or discard(), once.
   */
  readBody(onData: BodyConsumer, target?: BodyTarget): Promise<void>;
  /** Gives up the body (the connection is closed). */
  discard(): void;
  readonly contentLength: number;
  /** From Content-Range on ranged answers. */
  readonly contentRange: { start: number; end: number; total: number } | undefined;
  readonly etag: string | undefined;
  readonly partsCount: number | undefined;
  /** x-amz-checksum-* headers, in the SDK's field names (fetch/checksum/head.ts). */
  readonly checksums: ChecksumFields;
  /** Server-side encryption ("aws:kms", "SSE-C", …): SSE-KMS and SSE-C ETags are not MD5s. */
  readonly encryption: string | undefined;
}

export interface HeadResponse {
  readonly status: number;
  /** Lowercase names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
}

/** An S3 error in the shape the SDK gives, for classifyS3Error. */
export class S3HttpError extends Error {
  readonly Code: string;
  readonly $metadata: { httpStatusCode: number };
  readonly $response: { headers: Record<string, string | undefined> };
  constructor(
    status: number,
    code: string,
    message: string,
    headers: Record<string, string | undefined>,
  ) {
    super(message);
    this.name = code;
    this.Code = code;
    this.$metadata = { httpStatusCode: status };
    this.$response = { headers };
  }
}

export type CredentialSource = () => Promise<SigningCredentials | undefined>;

/** Sockets per store: enough for parallel ranged GETs and many small objects. */
export const MAX_SOCKETS = 128;

/** Time without a single byte (headers or body) after which a request is abandoned. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export class ObjectGetter {
  private readonly endpoint: URL;
  private readonly pathStyle: boolean;
  private readonly requesterPays: boolean;
  private readonly signer: SigV4Signer;
  private readonly credentials: CredentialSource;
  private readonly pool: Http1Pool;
  /** The endpoint is Google Cloud Storage's S3 interoperability API. */
  private readonly gcs: boolean;

  constructor(options: {
    endpoint: EndpointOptions;
    credentials: CredentialSource;
    idleTimeoutMs?: number | undefined;
    /** Extra TLS options (a private CA); tests use it. */
    tls?: ConnectionOptions | undefined;
    /** Where the proxy variables are read (proxy.ts); default process.env. */
    env?: Readonly<Record<string, string | undefined>> | undefined;
  }) {
    const { url, region, forcePathStyle } = options.endpoint;
    this.endpoint = new URL(url ?? `https://s3.${region}.amazonaws.com`);
    this.pathStyle = forcePathStyle;
    this.gcs = /(^|\.)storage\.googleapis\.com$/i.test(this.endpoint.hostname);
    this.requesterPays = options.endpoint.requesterPays === true;
    this.signer = new SigV4Signer(region);
    this.credentials = options.credentials;
    this.pool = new Http1Pool({
      url: this.endpoint,
      maxSockets: MAX_SOCKETS,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      tls: options.tls,
      proxyFor: (host, port) =>
        proxyFor(host, port, this.endpoint.protocol === "https:", options.env ?? process.env),
    });
  }

  destroy(): void {
    this.pool.destroy();
  }

  async get(request: GetRequest): Promise<GetResponse> {
    return toResponse(await this.send("GET", request));
  }

  /**
   * HEAD of an object (with `partNumber`: of one part), answered by its headers. Errors come
   * without a body: classified by status (s3-errors.ts), like the SDK does for HEAD.
   */
  async head(request: Omit<GetRequest, "range">): Promise<HeadResponse> {
    const response = await this.send("HEAD", request);
    await response.readBody(() => {});
    return { status: response.status, headers: response.headers };
  }

  private async send(method: "GET" | "HEAD", asked: GetRequest): Promise<Http1Response> {
    // An empty ETag pins nothing (review, 2026-12-06: a store listing no ETags had every
    // object over 1 MiB sent `If-Match: ""`, and each failed OBJECT_CHANGED). The download
    // is then verified by what there is (its size, a checksum), unpinned (etag.ts says so).
    const request = asked.ifMatch === "" ? { ...asked, ifMatch: undefined } : asked;
    const { host, path } = this.address(request.bucket, request.key);
    const query: Record<string, string> = { ...request.query };
    if (request.versionId !== undefined) query.versionId = request.versionId;
    if (request.partNumber !== undefined) query.partNumber = String(request.partNumber);
    const headers: Record<string, string> = {};
    if (request.range !== undefined)
      headers.range = `bytes=${request.range.start}-${request.range.end}`;
    if (request.ifMatch !== undefined) headers["if-match"] = `"${request.ifMatch}"`;
    if (request.checksumMode === true) headers["x-amz-checksum-mode"] = "ENABLED";
    // Google Cloud Storage decompresses an object stored with Content-Encoding: gzip on the fly
    // (decompressive transcoding) for a client that does not accept gzip: other bytes, another
    // length than its ETag, size and CRC describe. Accepting gzip gets the stored bytes, as
    // every other store sends them (interop review, 2026-12-06; cloud.google.com/storage/docs/
    // transcoding). Other stores never compress on the fly, and a proxy in front of them
    // might: the header goes to GCS only. Never decoded here.
    if (this.gcs) headers["accept-encoding"] = "gzip";
    // Signed with the rest: a Requester Pays bucket answers 403 to any request without it.
    if (this.requesterPays) headers["x-amz-request-payer"] = "requester";
    const credentials = await this.credentials();
    const signed =
      credentials === undefined
        ? { ...headers, host }
        : this.signer.sign({ method, host, path, query, headers }, credentials);
    const queryText = encodeQuery(query);
    const response = await this.pool.request({
      method,
      path: queryText === "" ? path : `${path}?${queryText}`,
      headers: signed,
      signal: request.signal,
    });
    if (response.status === 200 || response.status === 206) {
      const transformed = transformation(response.headers);
      if (transformed !== undefined) {
        response.discard();
        // 501: an answer, not an outage (s3-errors.ts retries 5xx but 501): the same
        // object is transformed again at every request.
        throw new S3HttpError(501, "ContentTransformed", transformed, { ...response.headers });
      }
      const changed = pinMismatch(request, response.headers);
      if (changed === undefined) return response;
      response.discard();
      // Versions never change: another version than the one asked for is a store that
      // ignores versionId, not an overwrite ("run again" was the advice: interop review).
      if (changed.startsWith(VERSION_MISMATCH)) {
        throw new S3HttpError(501, "VersionIgnored", changed, { ...response.headers });
      }
      throw new S3HttpError(412, "PreconditionFailed", changed, { ...response.headers });
    }
    throw await readError(response);
  }

  /** Host and encoded path of an object, path-style or virtual-host style. */
  private address(bucket: string, key: string): { host: string; path: string } {
    const base = this.endpoint.pathname === "/" ? "" : this.endpoint.pathname.replace(/\/+$/, "");
    const encodedKey = uriEncode(key, true);
    // Buckets with dots cannot be virtual hosts under TLS (the certificate is *.s3…).
    if (this.pathStyle || bucket.includes(".")) {
      return { host: this.endpoint.host, path: `${base}/${uriEncode(bucket)}/${encodedKey}` };
    }
    return { host: `${bucket}.${this.endpoint.host}`, path: `${base}/${encodedKey}` };
  }
}

/**
 * What makes an answer not the pinned version: an ETag or version ID other than the one the
 * request was pinned to. A store that honours If-Match answers 412 itself; one that ignores
 * it (some S3-compatible stores and proxies) would otherwise have its answer mixed with the
 * earlier ranges' version, and a size-only verification could not tell (review, 2026-12-05:
 * an 80 MiB object overwritten mid-download was published half old, half new, exit 0).
 * Treated as the 412 it should have been: restart on the new version, or OBJECT_CHANGED.
 */
function pinMismatch(
  request: GetRequest,
  headers: Readonly<Record<string, string | undefined>>,
): string | undefined {
  const etag = headers.etag;
  if (request.ifMatch !== undefined && etag !== undefined) {
    const found = comparableEtag(etag);
    if (found !== comparableEtag(request.ifMatch)) {
      return `the answer has ETag ${found}, not the ${request.ifMatch} it was pinned to (If-Match)`;
    }
  }
  const modified = headers["last-modified"];
  if (
    request.ifMatch !== undefined &&
    etag === undefined &&
    request.lastModified !== undefined &&
    modified !== undefined
  ) {
    const found = Date.parse(modified);
    const pinned = Date.parse(request.lastModified);
    if (Number.isFinite(found) && Number.isFinite(pinned) && found !== pinned) {
      return `the answer names no ETag and was last modified ${new Date(found).toISOString()}, not ${new Date(pinned).toISOString()} as the version it was pinned to`;
    }
  }
  const versionId = headers["x-amz-version-id"];
  if (
    request.versionId !== undefined &&
    versionId !== undefined &&
    versionId !== request.versionId
  ) {
    return `${VERSION_MISMATCH}${versionId}, not the ${request.versionId} it asked for`;
  }
  return undefined;
}

/**
 * Why an answer's body is not the stored bytes, or undefined: a store or proxy that
 * transformed it on the way (GCS's decompressive transcoding says so with
 * `x-guploader-response-body-transformations` and `Warning: 214`), which verification would
 * refuse only after the whole download, and a folder took for a changed object three times
 * (interop review, 2026-12-06).
 */
function transformation(headers: Readonly<Record<string, string | undefined>>): string | undefined {
  const said = headers["x-guploader-response-body-transformations"];
  const warning = headers.warning;
  if ((said === undefined || said.trim() === "") && !/(^|,)\s*214\b/.test(warning ?? "")) {
    return undefined;
  }
  return `the store transformed the object's bytes on the way (${said !== undefined && said.trim() !== "" ? `body transformations: ${said.trim()}` : `Warning: ${(warning ?? "").trim()}`}): not the stored bytes its ETag, size and checksums describe`;
}

const VERSION_MISMATCH = "the answer has version ";

/** An ETag as compared: no quotes, no weak prefix, lowercase. */
function comparableEtag(value: string): string {
  return value.trim().replace(/^W\//i, "").replace(/"/g, "").toLowerCase();
}

function toResponse(response: Http1Response): GetResponse {
  const header = (name: string): string | undefined => response.headers[name];
  const rangeMatch = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header("content-range") ?? "");
  const parts = header("x-amz-mp-parts-count");
  return {
    status: response.status,
    readBody: (onData, target) => response.readBody(onData, target),
    discard: () => response.discard(),
    contentLength: Number(header("content-length") ?? Number.NaN),
    contentRange:
      rangeMatch === null
        ? undefined
        : {
            start: Number(rangeMatch[1]),
            end: Number(rangeMatch[2]),
            total: Number(rangeMatch[3]),
          },
    etag: header("etag")?.replace(/"/g, "").toLowerCase(),
    partsCount: parts === undefined ? undefined : Number(parts),
    checksums: checksumHeaders(header),
    encryption: encryptionOf(header),
  };
}

/** The server-side encryption a response names: SSE-C, or x-amz-server-side-encryption. */
export function encryptionOf(header: (name: string) => string | undefined): string | undefined {
  return header("x-amz-server-side-encryption-customer-algorithm") !== undefined
    ? "SSE-C"
    : header("x-amz-server-side-encryption");
}

/** The x-amz-checksum-* headers of a response, under the SDK's field names. */
export function checksumHeaders(header: (name: string) => string | undefined): ChecksumFields {
  return {
    ChecksumCRC32: header("x-amz-checksum-crc32"),
    ChecksumCRC32C: header("x-amz-checksum-crc32c"),
    ChecksumCRC64NVME: header("x-amz-checksum-crc64nvme"),
    ChecksumSHA1: header("x-amz-checksum-sha1"),
    ChecksumSHA256: header("x-amz-checksum-sha256"),
    ChecksumType: header("x-amz-checksum-type"),
  };
}

/** Error bodies are short XML documents; more than this is not read into memory. */
const ERROR_BODY_LIMIT = 16_384;

async function readError(response: Http1Response): Promise<S3HttpError> {
  const { status, headers } = response;
  const chunks: Buffer[] = [];
  let kept = 0;
  await response.readBody((bytes) => {
    if (kept >= ERROR_BODY_LIMIT) return;
    const piece = Buffer.from(bytes.subarray(0, ERROR_BODY_LIMIT - kept));
    chunks.push(piece);
    kept += piece.length;
  });
  const body = Buffer.concat(chunks).toString("utf8");
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? defaultCode(status);
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1] ?? `HTTP ${status}`;
  // A refused signature names the bucket's region in its body only (region-redirect.ts).
  const region = /<Region>([^<]*)<\/Region>/.exec(body)?.[1];
  const named =
    headers["x-amz-bucket-region"] === undefined && region !== undefined
      ? { "x-amz-bucket-region": region }
      : {};
  return new S3HttpError(status, code, message, { ...headers, ...named });
}

/** The code of an error without a body (HEAD), named as the SDK names them. */
function defaultCode(status: number): string {
  if (status === 400) return "BadRequest";
  if (status === 405) return "MethodNotAllowed";
  if (status === 404) return "NotFound";
  if (status === 403) return "Forbidden";
  if (status === 412) return "PreconditionFailed";
  if (status === 503) return "ServiceUnavailable";
  return `Http${status}`;
}
