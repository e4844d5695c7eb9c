/**
 * AWS Signature Version 4 for the GET requests of the download hot path. The SDK's signer
 * and middleware cost 1-1.6 ms of CPU per request (../shared/MEASURED.md); for 20,000 small
 * objects that is most of the run, so GETs are signed here with node:crypto directly.
 * Spec: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 */
import { createHmac, createSecretKey, hash, type KeyObject } from "node:crypto";

export interface SigningCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
}

export interface RequestToSign {
  readonly method: "GET" | "HEAD";
  readonly host: string;
  /** Already URI-encoded path (see encodeKeyPath). */
  readonly path: string;
  /** Query parameters, not yet encoded. */
  readonly query: Readonly<Record<string, string>>;
  /** Lowercase header names; host and x-amz-* are added here. */
  readonly headers: Readonly<Record<string, string>>;
}

const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Strings that encode to themselves (unreserved characters only; with or without "/"). */
const UNRESERVED = /^[A-Za-z0-9\-_.~]*$/;
const UNRESERVED_OR_SLASH = /^[A-Za-z0-9\-_.~/]*$/;

/** RFC 3986 encoding as SigV4 wants it: unreserved characters kept, everything else %XX. */
export function uriEncode(value: string, keepSlash = false): string {
  // Most keys need no encoding: returned as they are, not rebuilt a character at a time
  // (14 MB of strings for 20,000 objects: a scavenge's worth every ~70 requests).
  if ((keepSlash ? UNRESERVED_OR_SLASH : UNRESERVED).test(value)) return value;
  let out = "";
  for (const byte of Buffer.from(value, "utf8")) {
    const char = String.fromCharCode(byte);
    if (
      (byte >= 0x41 && byte <= 0x5a) ||
      (byte >= 0x61 && byte <= 0x7a) ||
      (byte >= 0x30 && byte <= 0x39) ||
      char === "-" ||
      char === "_" ||
      char === "." ||
      char === "~" ||
      (keepSlash && char === "/")
    ) {
      out += char;
    } else {
      out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    }
  }
  return out;
}

export function encodeQuery(query: Readonly<Record<string, string>>): string {
  return Object.keys(query)
    .sort()
    .map((name) => `${uriEncode(name)}=${uriEncode(query[name] ?? "")}`)
    .join("&");
}

export class SigV4Signer {
  private readonly region: string;
  private readonly service = "s3";
  private keyCache: { date: string; secret: string; key: KeyObject } | undefined;
  private dateCache: { second: number; text: string } | undefined;

  constructor(region: string) {
    this.region = region;
  }

  /** Returns the headers to send (the given ones plus the signature). */
  sign(
    request: RequestToSign,
    credentials: SigningCredentials,
    now = new Date(),
  ): Record<string, string> {
    const amzDate = this.amzDate(now);
    const date = amzDate.slice(0, 8);
    const headers: Record<string, string> = {
      ...request.headers,
      host: request.host,
      "x-amz-date": amzDate,
      "x-amz-content-sha256": EMPTY_SHA256,
    };
    if (credentials.sessionToken !== undefined)
      headers["x-amz-security-token"] = credentials.sessionToken;
    const names = Object.keys(headers).sort();
    const canonicalHeaders = names
      .map((name) => `${name}:${String(headers[name]).trim()}\n`)
      .join("");
    const signedHeaders = names.join(";");
    const canonicalRequest = [
      request.method,
      request.path,
      encodeQuery(request.query),
      canonicalHeaders,
      signedHeaders,
      EMPTY_SHA256,
    ].join("\n");
    const scope = `${date}/${this.region}/${this.service}/aws4_request`;
    const stringToSign = [
      "AWS4-HMAC-SHA256",
      amzDate,
      scope,
      hash("sha256", canonicalRequest, "hex"),
    ].join("\n");
    const signature = createHmac("sha256", this.signingKey(date, credentials.secretAccessKey))
      .update(stringToSign)
      .digest("hex");
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return headers;
  }

  /** `now` as 20261206T171500Z, made once a second, not at every request. */
  private amzDate(now: Date): string {
    const second = Math.floor(now.getTime() / 1000);
    if (this.dateCache?.second !== second) {
      const text = now
        .toISOString()
        .replace(/[-:]/g, "")
        .replace(/\.\d{3}/, "");
      this.dateCache = { second, text };
    }
    return this.dateCache.text;
  }

  /**
   * The day's signing key, as a KeyObject: createHmac with a Buffer key builds one on every
   * call (9.7 us here against 1.6 us), once per request of 20,000.
   */
  private signingKey(date: string, secret: string): KeyObject {
    const cached = this.keyCache;
    if (cached !== undefined && cached.date === date && cached.secret === secret) return cached.key;
    const hmac = (key: string | Buffer, data: string) =>
      createHmac("sha256", key).update(data).digest();
    const key = createSecretKey(
      hmac(hmac(hmac(hmac(`AWS4${secret}`, date), this.region), this.service), "aws4_request"),
    );
    this.keyCache = { date, secret, key };
    return key;
  }
}
