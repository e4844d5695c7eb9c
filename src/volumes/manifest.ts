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
    const value = JSON.parse(text) as Partial<Manifest>;
    if (value.version !== MANIFEST_VERSION || typeof value.uri !== "string") return undefined;
    if (value.kind !== "object" && value.kind !== "prefix") return undefined;
    return value as Manifest;
  } catch {
    return undefined;
  }
}
