/**
 * Parsing `s3://bucket/key` URIs (SPEC §1) and deriving dataset names from them. Pure.
 */
import { archiveFormatOf } from "../archive/formats.ts";

export const URI_FORMS =
  "s3://bucket/key (one object), s3://bucket/prefix/ (every object under a prefix) or s3://bucket (the whole bucket)";

/**
 * What a URI names. `object-or-prefix` is `s3://b/key` without a trailing slash: an object
 * if that key exists, else the prefix `key/` (decided when resolving against the store).
 */
export type UriTarget = "object-or-prefix" | "prefix" | "bucket";

export interface S3Location {
  readonly bucket: string;
  /** The key or prefix; "" for a whole bucket; ends with "/" for a prefix. */
  readonly key: string;
  readonly target: UriTarget;
}

export type UriResult = { ok: true; location: S3Location } | { ok: false; reason: string };

// Bucket names as S3-compatible stores accept them, including legacy us-east-1 names
// (uppercase, underscores, up to 255 characters).
// (S3 itself wants 3 or more; short names are accepted for other stores and examples.)
const BUCKET_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253}[A-Za-z0-9])?$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
const MAX_KEY_BYTES = 1024;

export function parseS3Uri(value: string): UriResult {
  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(value);
  if (!schemeMatch) {
    return { ok: false, reason: `${JSON.stringify(scrubUserInfo(value))} is not a URI` };
  }
  const scheme = schemeMatch[1]?.toLowerCase();
  if (scheme !== "s3") {
    return {
      ok: false,
      reason: `scheme "${schemeMatch[1]}://" is not supported (for an S3-compatible store, use s3:// with the "endpoint" field)`,
    };
  }
  const rest = value.slice(schemeMatch[0].length);
  const slash = rest.indexOf("/");
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  const key = slash === -1 ? "" : rest.slice(slash + 1);
  // A secret holding "/" ends the "bucket" early: `s3://AK:wJal/K7MD@bucket/key` has the
  // bucket `AK:wJal`, which a bucket-name error echoed (review, 2026-12-06). No bucket name
  // holds ":".
  if (bucket.includes("@") || (bucket.includes(":") && rest.includes("@"))) {
    // Never echo it: the part before "@" is a credential.
    return {
      ok: false,
      reason:
        "the URI contains credentials (user:password@); give keys in awsAccessKeyId/awsSecretAccessKey instead",
    };
  }
  if (bucket === "") {
    return { ok: false, reason: `${JSON.stringify(scrubUserInfo(value))} has no bucket name` };
  }
  if (!BUCKET_PATTERN.test(bucket) || bucket.includes("..")) {
    return {
      ok: false,
      reason: `bucket name ${JSON.stringify(bucket)} is not valid (up to 255 letters, digits, ".", "-" or "_", starting and ending with a letter or digit)`,
    };
  }
  if (CONTROL_CHARACTERS.test(key)) {
    return { ok: false, reason: "the key contains a control character" };
  }
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) {
    return { ok: false, reason: `the key is longer than ${MAX_KEY_BYTES} bytes` };
  }
  const target: UriTarget =
    key === "" ? "bucket" : key.endsWith("/") ? "prefix" : "object-or-prefix";
  return { ok: true, location: { bucket, key, target } };
}

/** The canonical text of a location: `s3://bucket/key`. */
export function formatS3Uri(location: Pick<S3Location, "bucket" | "key">): string {
  return `s3://${location.bucket}${location.key === "" ? "" : `/${location.key}`}`;
}

/**
 * The derived dataset name: the last path item of the URI with a recognised archive
 * extension removed (`s3://b/mnist.zip` → `mnist`, `s3://b` → `b`, `s3://b/images/` → `images`).
 */
export function deriveName(location: S3Location): string {
  const segments = location.key.split("/").filter((segment) => segment !== "");
  const last = segments.at(-1) ?? location.bucket;
  return archiveFormatOf(last)?.stem ?? last;
}

/** The last path item of an object key: the file name of a single non-archive object. */
export function baseNameOfKey(key: string): string {
  return (
    key
      .split("/")
      .filter((segment) => segment !== "")
      .at(-1) ?? key
  );
}

// A dataset name becomes a directory name under shared storage and the mount root, and
// the storage layout keeps its own files under names starting with "." beside datasets.
const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._+=@,-]*$/;
export const MAX_NAME_LENGTH = 160;
export const NAME_FORMS = `1-${MAX_NAME_LENGTH} characters of ASCII letters, digits and . _ - + = @ , starting with an ASCII letter, a digit or "_"`;

export function checkName(name: string): string | undefined {
  if (name.length === 0) return "the name is empty";
  if (name.length > MAX_NAME_LENGTH) return `the name is longer than ${MAX_NAME_LENGTH} characters`;
  if (!NAME_PATTERN.test(name))
    return `${JSON.stringify(name)} is not a single safe path component`;
  return undefined;
}

/**
 * Removes a `user:password@` part from a URL or URI about to be echoed in a message: all from
 * the start of its authority (after "://", else from the start) to its last "@". Not up to a
 * "/" before the "@": half of AWS secret keys hold one, and `AK:wJal/K7MD@host` was echoed
 * as `AK:wJal/***@host`, a part of the secret (review, 2026-12-06). A key or path holding an
 * "@" of its own is cut too: an error message loses a little, never a secret.
 */
export function scrubUserInfo(text: string): string {
  const at = text.lastIndexOf("@");
  if (at === -1) return text;
  const scheme = text.indexOf("://");
  const start = scheme !== -1 && scheme < at ? scheme + 3 : 0;
  return `${text.slice(0, start)}***@${text.slice(at + 1)}`;
}

/** One source written two ways (`s3://b/images/` and `s3://b/images`) is one source. */
export function sameSource(a: string, b: string): boolean {
  return a.replace(/\/+$/, "") === b.replace(/\/+$/, "");
}

/** A dataset's source: its URI, and the endpoint it was read from (undefined: AWS S3). */
export interface SourceAt {
  readonly uri: string;
  readonly endpoint: string | undefined;
}

/**
 * Which store an endpoint names: AWS S3 (no endpoint, or any amazonaws.com host: regional,
 * dual-stack, FIPS, VPC endpoints all serve one bucket namespace; China's is its own), else
 * its host and port (and path), whatever the scheme or a trailing slash.
 */
export function storeOf(endpoint: string | undefined): string {
  if (endpoint === undefined) return "aws";
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return endpoint;
  }
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  // S3's own host names only (s3.…, s3-…, bucket.s3.…, ….s3.….vpce…): a load balancer or an
  // instance under amazonaws.com in front of another store is that store (review, 2026-12-06).
  const s3 = /(^|\.)s3([.-]|$)/.test(host);
  if (s3 && host.endsWith(".amazonaws.com.cn")) return "aws-cn";
  if (s3 && host.endsWith(".amazonaws.com")) return "aws";
  const port = url.port !== "" ? url.port : url.protocol === "https:" ? "443" : "80";
  return `${host}:${port}${url.pathname.replace(/\/+$/, "")}`;
}

/**
 * The same URI on the same store (as far as endpoint names tell: one server under two names
 * counts as two). Used where a job would be given the copy published at its path although the
 * source changed (keptInUse): the same bucket and key on another store (a production and a
 * development MinIO) is not an older version of this job's data (review, 2026-12-06: a
 * development job read the production copy).
 */
export function sameSourceAt(a: SourceAt, b: SourceAt): boolean {
  return sameSource(a.uri, b.uri) && storeOf(a.endpoint) === storeOf(b.endpoint);
}

/** A source as said in messages: its URI, and its endpoint where one was given. */
export function sourceLabel(source: SourceAt): string {
  return source.endpoint === undefined ? source.uri : `${source.uri} at ${source.endpoint}`;
}
