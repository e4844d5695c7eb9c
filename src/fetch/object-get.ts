/**
 * Signed GET requests over node:http(s) with keep-alive: the download hot path. Plain
 * node:http did 3,200-4,400 small objects/s here against 600-1,000/s through the SDK
 * (../shared/MEASURED.md); HEAD and LIST, which are few, stay on the SDK.
 * Failures are thrown in the SDK's error shape so that s3-errors.ts classifies both alike.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { EndpointOptions } from "../config/types.ts";
import type { ChecksumFields } from "./checksum/index.ts";
import { encodeQuery, type SigningCredentials, SigV4Signer, uriEncode } from "./sigv4.ts";

export interface GetRequest {
  readonly bucket: string;
  readonly key: string;
  readonly versionId?: string | undefined;
  /** Inclusive byte range. */
  readonly range?: { readonly start: number; readonly end: number } | undefined;
  /** ETag (unquoted) the object must still have: a changed object answers 412. */
  readonly ifMatch?: string | undefined;
  readonly partNumber?: number | undefined;
  /** Ask for the stored S3 additional checksums (whole-object GETs only: ranges get none). */
  readonly checksumMode?: boolean | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface GetResponse {
  readonly status: number;
  readonly body: IncomingMessage;
  readonly contentLength: number;
  /** From Content-Range on ranged answers. */
  readonly contentRange: { start: number; end: number; total: number } | undefined;
  readonly etag: string | undefined;
  readonly partsCount: number | undefined;
  /** x-amz-checksum-* headers, in the SDK's field names (fetch/checksum/head.ts). */
  readonly checksums: ChecksumFields;
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
export const MAX_SOCKETS = 64;

/** Time without a single byte (headers or body) after which a request is abandoned. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export class ObjectGetter {
  private readonly endpoint: URL;
  private readonly pathStyle: boolean;
  private readonly signer: SigV4Signer;
  private readonly credentials: CredentialSource;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly idleTimeoutMs: number;

  constructor(options: {
    endpoint: EndpointOptions;
    credentials: CredentialSource;
    idleTimeoutMs?: number | undefined;
  }) {
    const { url, region, forcePathStyle } = options.endpoint;
    this.endpoint = new URL(url ?? `https://s3.${region}.amazonaws.com`);
    this.pathStyle = forcePathStyle;
    this.signer = new SigV4Signer(region);
    this.credentials = options.credentials;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    const agentOptions = { keepAlive: true, maxSockets: MAX_SOCKETS, scheduling: "lifo" as const };
    this.agent =
      this.endpoint.protocol === "https:"
        ? new HttpsAgent(agentOptions)
        : new HttpAgent(agentOptions);
  }

  destroy(): void {
    this.agent.destroy();
  }

  async get(request: GetRequest): Promise<GetResponse> {
    const response = await this.send("GET", request);
    return toResponse(response.statusCode ?? 0, response);
  }

  /**
   * HEAD of an object (with `partNumber`: of one part), answered by its headers. Errors come
   * without a body: classified by status (s3-errors.ts), like the SDK does for HEAD.
   */
  async head(request: Omit<GetRequest, "range">): Promise<HeadResponse> {
    const response = await this.send("HEAD", request);
    response.resume();
    return { status: response.statusCode ?? 0, headers: flatHeaders(response) };
  }

  private async send(method: "GET" | "HEAD", request: GetRequest): Promise<IncomingMessage> {
    const { host, path } = this.address(request.bucket, request.key);
    const query: Record<string, string> = {};
    if (request.versionId !== undefined) query.versionId = request.versionId;
    if (request.partNumber !== undefined) query.partNumber = String(request.partNumber);
    const headers: Record<string, string> = {};
    if (request.range !== undefined)
      headers.range = `bytes=${request.range.start}-${request.range.end}`;
    if (request.ifMatch !== undefined) headers["if-match"] = `"${request.ifMatch}"`;
    if (request.checksumMode === true) headers["x-amz-checksum-mode"] = "ENABLED";
    const credentials = await this.credentials();
    const signed =
      credentials === undefined
        ? { ...headers, host }
        : this.signer.sign({ method, host, path, query, headers }, credentials);
    const queryText = encodeQuery(query);
    const send = this.endpoint.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(
        {
          protocol: this.endpoint.protocol,
          hostname: this.endpoint.hostname,
          port: this.endpoint.port === "" ? undefined : this.endpoint.port,
          method,
          path: queryText === "" ? path : `${path}?${queryText}`,
          headers: signed,
          agent: this.agent,
          signal: request.signal,
        },
        (response) => {
          const status = response.statusCode ?? 0;
          if (status === 200 || status === 206) {
            resolve(response);
            return;
          }
          readError(status, response).then(reject, reject);
        },
      );
      // A socket silent for this long, before or after the headers, is a stall: abandon it.
      req.setTimeout(this.idleTimeoutMs, () => {
        const error = new Error(
          `no data for ${this.idleTimeoutMs / 1000} s`,
        ) as NodeJS.ErrnoException;
        error.code = "ETIMEDOUT";
        req.destroy(error);
      });
      req.on("error", reject);
      req.end();
    });
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

function toResponse(status: number, response: IncomingMessage): GetResponse {
  const header = (name: string) => {
    const value = response.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const rangeMatch = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header("content-range") ?? "");
  const parts = header("x-amz-mp-parts-count");
  return {
    status,
    body: response,
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
  };
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

function flatHeaders(response: IncomingMessage): Record<string, string | undefined> {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(response.headers)) {
    headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return headers;
}

async function readError(status: number, response: IncomingMessage): Promise<S3HttpError> {
  const headers = flatHeaders(response);
  let body = "";
  for await (const chunk of response) {
    if (body.length < 16_384) body += String(chunk);
  }
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? defaultCode(status);
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1] ?? `HTTP ${status}`;
  return new S3HttpError(status, code, message, headers);
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
