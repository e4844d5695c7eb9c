/** `dsfetch list`: the datasets published in a team's shared storage, from their manifests. */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { locationIn, META_DIR, sharedDataRoot } from "./layout.ts";
import { manifestOfTree } from "./occupant.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { activeLeases, lastUsed, unreadableLeases } from "./usage.ts";

/** One published dataset. Field names are the `list --json` output: keep them stable. */
export interface CatalogEntry {
  readonly name: string;
  readonly path: string;
  readonly uri: string;
  readonly kind: "object" | "prefix";
  readonly etag: string | null;
  readonly versionId: string | null;
  readonly bytes: number;
  readonly files: number;
  readonly createdAt: string;
  /** Last time it was staged or reused; createdAt when never recorded. */
  readonly lastUsed: string;
  /** Holders of fresh leases ("host pid N"): in use by a running job. */
  readonly inUse: readonly string[];
}

/**
 * `call` bounds the calls on the storage (stage/storage-calls.ts: on storage that stopped
 * answering, `list` and `prune` fail with STALLED instead of waiting for good).
 */
export async function listDatasets(
  storageRoot: string,
  team: string,
  call: StorageCall = unboundedCall,
): Promise<CatalogEntry[]> {
  const dataRoot = sharedDataRoot(storageRoot, team);
  const manifests = join(dataRoot, META_DIR, "manifests");
  const names = await call(`reading ${manifests}`, () =>
    readdir(manifests).catch((): string[] => []),
  );
  const entries: CatalogEntry[] = [];
  for (const file of names.filter((name) => name.endsWith(".json")).sort()) {
    const location = locationIn(dataRoot, file.slice(0, -".json".length));
    const found = await call(`reading ${location.manifestPath}`, async () => {
      // Only a directory (not a link to one) that its manifest names: a user's directory made
      // where a dataset was removed by hand is not listed, and so never pruned (review).
      const published = await lstat(location.path).then(
        (s) => s.isDirectory(),
        () => false,
      );
      const manifest = published ? await manifestOfTree(location) : undefined;
      if (manifest === undefined) return undefined;
      return {
        manifest,
        used: await lastUsed(location),
        inUse: await activeLeases(location).catch((error: unknown) => [unreadableLeases(error)]),
      };
    });
    if (found === undefined) continue;
    const { manifest, used, inUse } = found;
    entries.push({
      name: manifest.name,
      path: location.path,
      uri: manifest.uri,
      kind: manifest.kind,
      etag: manifest.etag ?? null,
      versionId: manifest.versionId ?? null,
      bytes: manifest.bytes,
      files: manifest.files.length,
      createdAt: manifest.createdAt,
      lastUsed: (used ?? new Date(manifest.createdAt)).toISOString(),
      inUse,
    });
  }
  return entries;
}
