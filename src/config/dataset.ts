/**
 * One entry of the datasets array (SPEC §1) → a frozen DatasetSpec, or a CONFIG_INVALID
 * error that names the entry, the field, what was wrong and the accepted forms. Pure: the
 * environment is passed in.
 */
import { archiveFormatOf } from "../archive/formats.ts";
import { DsfetchError } from "../errors.ts";
import { resolveEndpoint } from "./endpoint.ts";
import {
  checkName,
  deriveName,
  formatS3Uri,
  NAME_FORMS,
  parseS3Uri,
  type S3Location,
  scrubUserInfo,
  URI_FORMS,
} from "./s3-uri.ts";
import { describeType, parseSize, SIZE_FORMS } from "./size.ts";
import { closest } from "./suggest.ts";
import {
  type Credentials,
  type DatasetSpec,
  DEFAULT_VOLUME_SIZE,
  type VolumeSpec,
} from "./types.ts";

export const DATASET_FIELDS = [
  "uri",
  "url",
  "name",
  "etag",
  "versionId",
  "volumeOptions",
  "awsAccessKeyId",
  "awsSecretAccessKey",
  "awsSessionToken",
  "endpoint",
  "region",
  "pathStyle",
  "requesterPays",
] as const;

const VOLUME_FIELDS = ["kind", "size"] as const;
const VOLUME_KINDS = ["dynamic"] as const;

export const ETAG_FORMS =
  '32 hexadecimal digits (a single-part upload) or 32 hexadecimal digits, "-" and a part count (a multipart upload), with or without surrounding quotes, in any case';
const ETAG_PATTERN = /^[0-9a-f]{32}(-[1-9][0-9]{0,4})?$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

type Entry = Record<string, unknown>;

/** Builds the error for one entry; `label` is the best name known so far. */
class EntryErrors {
  label: string;
  readonly index: number;
  constructor(index: number) {
    this.index = index;
    this.label = `datasets[${index}]`;
  }
  named(name: string): void {
    this.label = `datasets[${this.index}] ("${name}")`;
  }
  fail(field: string | undefined, problem: string, accepted?: string, hint?: string): DsfetchError {
    const where =
      field === undefined
        ? this.label
        : /^[A-Z][A-Z0-9_]*$/.test(field)
          ? `${this.label}: environment variable ${field}`
          : `${this.label}: field "${field}"`;
    return new DsfetchError("CONFIG_INVALID", `${where}: ${problem}`, {
      dataset: this.label,
      expected: accepted,
      hint: hint ?? (accepted === undefined ? undefined : `accepted: ${accepted}`),
    });
  }
}

export function parseDatasetEntry(
  raw: unknown,
  index: number,
  env: Readonly<Record<string, string | undefined>>,
): DatasetSpec {
  const errors = new EntryErrors(index);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw errors.fail(
      undefined,
      `each dataset must be an object, not ${describeType(raw)}`,
      '{ "uri": "s3://bucket/key" }',
    );
  }
  const entry = raw as Entry;
  rejectUnknownFields(entry, DATASET_FIELDS, errors, "");

  const uriText = readUri(entry, errors);
  const parsedUri = parseS3Uri(uriText);
  if (!parsedUri.ok) throw errors.fail(fieldOfUri(entry), parsedUri.reason, URI_FORMS);
  const location = parsedUri.location;
  errors.named(formatS3Uri(location));

  const name = readName(entry, location, errors);
  errors.named(name);

  const etag = readEtag(entry, location, errors);
  const versionId = readVersionId(entry, location, errors);
  const volume = readVolume(entry, errors);
  const credentials = readCredentials(entry, errors);
  const endpoint = resolveEndpoint(
    {
      endpoint: optionalString(entry, "endpoint", errors),
      region: optionalString(entry, "region", errors),
      pathStyle: optionalBoolean(entry, "pathStyle", errors),
      requesterPays: optionalBoolean(entry, "requesterPays", errors),
    },
    env,
    (field, problem, accepted) => errors.fail(field, problem, accepted),
  );
  const archive =
    location.target === "object-or-prefix"
      ? archiveFormatOf(lastSegment(location))?.format
      : undefined;

  return Object.freeze({
    index,
    name,
    uri: formatS3Uri(location),
    location: Object.freeze({ ...location }),
    etag,
    versionId,
    archive,
    volume: Object.freeze(volume),
    credentials: credentials === undefined ? undefined : Object.freeze(credentials),
    endpoint: Object.freeze(endpoint),
  });
}

/**
 * Other tools' names for our fields, too far from ours for a typo's suggestion (review,
 * 2026-12-05: `forcePathStyle`, the AWS SDK's, got none).
 */
const FIELD_ALIASES: Readonly<Record<string, string>> = {
  forcePathStyle: "pathStyle",
  s3ForcePathStyle: "pathStyle",
  usePathStyle: "pathStyle",
  endpointUrl: "endpoint",
  endpoint_url: "endpoint",
  aws_session_token: "awsSessionToken",
  sessionToken: "awsSessionToken",
  accessKeyId: "awsAccessKeyId",
  secretAccessKey: "awsSecretAccessKey",
  version: "versionId",
  requestPayer: "requesterPays",
  RequestPayer: "requesterPays",
  request_payer: "requesterPays",
  requester_pays: "requesterPays",
  VersionId: "versionId",
};

function rejectUnknownFields(
  entry: Entry,
  known: readonly string[],
  errors: EntryErrors,
  parent: string,
): void {
  for (const field of Object.keys(entry)) {
    if (known.includes(field)) continue;
    const alias = FIELD_ALIASES[field];
    const suggestion = alias !== undefined && known.includes(alias) ? alias : closest(field, known);
    const printable = JSON.stringify(field.length > 60 ? `${field.slice(0, 60)}…` : field);
    throw errors.fail(
      undefined,
      `unknown field ${parent}${printable}${suggestion === undefined ? "" : ` (did you mean "${suggestion}"?)`}`,
      // Said as it is: it read "accepted: known fields: …" (exploratory tester, 2026-12-08).
      undefined,
      `known fields: ${known.join(", ")}`,
    );
  }
}

function fieldOfUri(entry: Entry): string {
  return entry.uri === undefined ? "url" : "uri";
}

function readUri(entry: Entry, errors: EntryErrors): string {
  const { uri, url } = entry;
  for (const [field, value] of [
    ["uri", uri],
    ["url", url],
  ] as const) {
    if (value !== undefined && typeof value !== "string") {
      throw errors.fail(field, `must be a string, not ${describeType(value)}`, URI_FORMS);
    }
  }
  if (typeof uri === "string" && typeof url === "string" && uri !== url) {
    throw errors.fail(
      undefined,
      `"uri" (${JSON.stringify(scrubUserInfo(uri))}) and "url" (${JSON.stringify(scrubUserInfo(url))}) disagree; give only one of them`,
    );
  }
  const value = (uri ?? url) as string | undefined;
  if (value === undefined) throw errors.fail(undefined, 'missing "uri"', URI_FORMS);
  return value;
}

function lastSegment(location: S3Location): string {
  return (
    location.key
      .split("/")
      .filter((segment) => segment !== "")
      .at(-1) ?? location.bucket
  );
}

function readName(entry: Entry, location: S3Location, errors: EntryErrors): string {
  const given = entry.name;
  if (given !== undefined) {
    if (typeof given !== "string") {
      throw errors.fail("name", `must be a string, not ${describeType(given)}`, NAME_FORMS);
    }
    const problem = checkName(given);
    if (problem !== undefined) throw errors.fail("name", problem, NAME_FORMS);
    return given;
  }
  const derived = deriveName(location);
  const problem = checkName(derived);
  // `s3://b/k?versionId=…` (a console's or an HTTPS URL's habit) read as a key with a "?":
  // it was refused as an unusable name only (exploratory tester, 2026-12-08).
  const query = /\?(versionId|versionid|response-[a-z-]+|X-Amz-[A-Za-z-]+)=/.exec(location.key);
  if (query !== null) {
    throw errors.fail(
      undefined,
      `the URI's key ends in "${query[0]}…": s3:// URIs take no query (a key may hold a "?")`,
      undefined,
      query[1]?.toLowerCase() === "versionid"
        ? 'give the version as a field: "versionId": "<id>", and the URI without "?versionId=…" (a key that really holds "?" needs a "name")'
        : 'give the URI without the query (a key that really holds "?" needs a "name")',
    );
  }
  if (problem !== undefined) {
    throw errors.fail(
      undefined,
      `the name derived from the URI is not usable: ${problem}; give a "name"`,
      NAME_FORMS,
    );
  }
  return derived;
}

function requireObjectTarget(field: string, location: S3Location, errors: EntryErrors): void {
  if (location.target !== "object-or-prefix") {
    const what = location.target === "bucket" ? "a whole bucket" : "a prefix (folder)";
    throw errors.fail(
      field,
      `applies to a single object only, but ${formatS3Uri(location)} names ${what}`,
      `remove "${field}", or point "uri" at one object (no trailing "/")`,
    );
  }
}

function readEtag(entry: Entry, location: S3Location, errors: EntryErrors): string | undefined {
  const value = entry.etag;
  if (value === undefined) return undefined;
  if (typeof value !== "string") {
    throw errors.fail("etag", `must be a string, not ${describeType(value)}`, ETAG_FORMS);
  }
  requireObjectTarget("etag", location, errors);
  const normalized = normalizeEtag(value);
  if (!ETAG_PATTERN.test(normalized)) {
    const shown = value.length > 80 ? `${value.slice(0, 80)}…` : value;
    throw errors.fail("etag", `${JSON.stringify(shown)} is not an S3 ETag`, ETAG_FORMS);
  }
  return normalized;
}

/**
 * ETags compare without quotes and case-insensitively, and without a weak mark: a proxy may
 * send `W/"…"` for the store's ETag, and sent back in If-Match as it was, every range
 * failed 412 and the object was called overwritten (review, 2026-12-05). The bytes are
 * still checked against the ETag's digest, so a proxy that changed them is found.
 */
export function normalizeEtag(value: string): string {
  const trimmed = value.trim().replace(/^W\//i, "");
  const unquoted =
    trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')
      ? trimmed.slice(1, -1)
      : trimmed;
  return unquoted.toLowerCase();
}

function readVersionId(
  entry: Entry,
  location: S3Location,
  errors: EntryErrors,
): string | undefined {
  const value = entry.versionId;
  if (value === undefined) return undefined;
  const forms =
    "the object's version ID as S3 reports it (a non-empty string of up to 1024 characters)";
  if (typeof value !== "string") {
    throw errors.fail("versionId", `must be a string, not ${describeType(value)}`, forms);
  }
  requireObjectTarget("versionId", location, errors);
  if (
    value === "" ||
    value.length > 1024 ||
    CONTROL_CHARACTERS.test(value) ||
    value.trim() !== value
  ) {
    throw errors.fail(
      "versionId",
      "is empty, too long, or has spaces or control characters",
      forms,
    );
  }
  return value;
}

function readVolume(entry: Entry, errors: EntryErrors): VolumeSpec {
  const value = entry.volumeOptions;
  if (value === undefined) return { kind: "shared" };
  const forms = '{ "kind": "dynamic", "size": "10Gi" } (size optional, default 5Gi)';
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw errors.fail("volumeOptions", `must be an object, not ${describeType(value)}`, forms);
  }
  const options = value as Entry;
  rejectUnknownFields(options, VOLUME_FIELDS, errors, "volumeOptions.");
  const kind = options.kind;
  if (kind === undefined) throw errors.fail("volumeOptions.kind", "is missing", forms);
  if (typeof kind !== "string" || !(VOLUME_KINDS as readonly string[]).includes(kind)) {
    const shown = typeof kind === "string" ? JSON.stringify(kind) : describeType(kind);
    throw errors.fail("volumeOptions.kind", `${shown} is not a volume kind`, `"dynamic"`);
  }
  const sizeValue = options.size === undefined ? DEFAULT_VOLUME_SIZE : options.size;
  const size = parseSize(sizeValue);
  if (!size.ok) throw errors.fail("volumeOptions.size", size.reason, SIZE_FORMS);
  return { kind: "ephemeral", sizeBytes: size.bytes, sizeText: String(sizeValue) };
}

function readCredentials(entry: Entry, errors: EntryErrors): Credentials | undefined {
  // Values of these fields are secrets: messages name the field, never the value.
  const accessKeyId = optionalSecret(entry, "awsAccessKeyId", errors);
  const secretAccessKey = optionalSecret(entry, "awsSecretAccessKey", errors);
  const sessionToken = optionalSecret(entry, "awsSessionToken", errors);
  if (accessKeyId === undefined && secretAccessKey === undefined) {
    if (sessionToken !== undefined) {
      throw errors.fail(
        "awsSessionToken",
        'is given without "awsAccessKeyId" and "awsSecretAccessKey"',
        "a session token together with both keys",
      );
    }
    return undefined;
  }
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    const missing = accessKeyId === undefined ? "awsAccessKeyId" : "awsSecretAccessKey";
    throw errors.fail(
      missing,
      "is missing: per-dataset credentials need both keys",
      '"awsAccessKeyId" and "awsSecretAccessKey" together, or neither (then the standard AWS credential chain applies)',
    );
  }
  return { accessKeyId, secretAccessKey, sessionToken };
}

function optionalSecret(entry: Entry, field: string, errors: EntryErrors): string | undefined {
  const value = entry[field];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "" || value.trim() !== value) {
    throw errors.fail(field, "must be a non-empty string without surrounding spaces");
  }
  return value;
}

function optionalString(entry: Entry, field: string, errors: EntryErrors): string | undefined {
  const value = entry[field];
  if (value === undefined) return undefined;
  if (typeof value !== "string") {
    throw errors.fail(field, `must be a string, not ${describeType(value)}`);
  }
  return value;
}

function optionalBoolean(entry: Entry, field: string, errors: EntryErrors): boolean | undefined {
  const value = entry[field];
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") {
    throw errors.fail(field, `must be true or false, not ${describeType(value)}`, "true or false");
  }
  return value;
}
