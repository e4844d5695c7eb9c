/**
 * The manifest written beside every published dataset (SPEC §2): where it came from, what
 * was resolved, the files with sizes and digests, and how they were verified. Reading is
 * defensive: a manifest that does not parse is treated as absent, never trusted.
 */
import { readFile } from "node:fs/promises";

export const MANIFEST_VERSION = 1;

export interface ManifestFile {
  readonly path: string;
  readonly bytes: number;
  /** e.g. "md5:…", "sha256:…" */
  readonly digest?: string | undefined;
}

export interface Manifest {
  readonly version: typeof MANIFEST_VERSION;
  readonly name: string;
  /** `s3://bucket/key`, never with credentials. */
  readonly uri: string;
  readonly endpoint: string | undefined;
  readonly kind: "object" | "prefix";
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
  /** For a prefix: digest of the listing (fetch/resolve.ts). */
  readonly listingDigest: string | undefined;
  readonly bytes: number;
  readonly files: readonly ManifestFile[];
  readonly verification: string;
  readonly createdAt: string;
  readonly host: string;
}

export async function readManifest(path: string): Promise<Manifest | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as unknown;
    return isManifest(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether `value` has every field a manifest is read for, with its type. Valid JSON with a
 * field damaged (`"files": null`, a `createdAt` that is no time) made `list` and `prune` fail
 * as INTERNAL, and `fetch` reuse the dataset (review): it is a damaged manifest like any.
 */
function isManifest(value: unknown): value is Manifest {
  if (typeof value !== "object" || value === null) return false;
  const m = value as Record<string, unknown>;
  const optionalString = (field: unknown) => field === undefined || typeof field === "string";
  const size = (field: unknown) =>
    typeof field === "number" && Number.isSafeInteger(field) && field >= 0;
  return (
    m.version === MANIFEST_VERSION &&
    typeof m.name === "string" &&
    typeof m.uri === "string" &&
    (m.kind === "object" || m.kind === "prefix") &&
    optionalString(m.endpoint) &&
    optionalString(m.etag) &&
    optionalString(m.versionId) &&
    optionalString(m.listingDigest) &&
    size(m.bytes) &&
    Array.isArray(m.files) &&
    m.files.every(
      (file: unknown) =>
        typeof file === "object" &&
        file !== null &&
        typeof (file as ManifestFile).path === "string" &&
        size((file as ManifestFile).bytes) &&
        optionalString((file as ManifestFile).digest),
    ) &&
    typeof m.verification === "string" &&
    typeof m.createdAt === "string" &&
    !Number.isNaN(Date.parse(m.createdAt)) &&
    optionalString(m.host)
  );
}
