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
  if (bucket.includes("@")) {
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
export const NAME_FORMS = `1-${MAX_NAME_LENGTH} characters of letters, digits and . _ - + = @ , starting with a letter, a digit or "_"`;

export function checkName(name: string): string | undefined {
  if (name.length === 0) return "the name is empty";
  if (name.length > MAX_NAME_LENGTH) return `the name is longer than ${MAX_NAME_LENGTH} characters`;
  if (!NAME_PATTERN.test(name))
    return `${JSON.stringify(name)} is not a single safe path component`;
  return undefined;
}

/** Removes a `user:password@` part from text that is about to be echoed in a message. */
export function scrubUserInfo(text: string): string {
  if (!text.includes("@")) return text;
  // A linear scan (a regex here backtracks quadratically on long hostile input): the run of
  // characters before each "@", back to a "/", another "@" or white space, is user info.
  const parts: string[] = [];
  let copied = 0;
  let segmentStart = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === "/" || char === " " || char === "\t" || char === "\n" || char === "\r") {
      segmentStart = i + 1;
    } else if (char === "@") {
      parts.push(text.slice(copied, segmentStart), "***@");
      copied = i + 1;
      segmentStart = i + 1;
    }
  }
  parts.push(text.slice(copied));
  return parts.join("");
}
