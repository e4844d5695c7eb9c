/** `dsfetch list`: the datasets published in a team's shared storage, from their manifests. */
import { lstat, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { DsfetchError } from "../errors.ts";
import { inspectStaged } from "./inspect.ts";
import { type DatasetLocation, locationIn, META_DIR, sharedDataRoot } from "./layout.ts";
import { fileBytes, type Manifest, readManifest } from "./manifest.ts";
import { manifestOfTree } from "./occupant.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { bytesUnder } from "./tree-bytes.ts";
import { isTreeSeal } from "./tree-seal.ts";
import { activeLeases, lastUsed, unreadableLeases } from "./usage.ts";
import { type ContentCheck, verifyContent } from "./verify-content.ts";

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
  /**
   * With `list --check`: its files compared with its seal (tree-seal.ts). "intact"; "times"
   * (the same names and sizes, other modification times: fetch reuses it and warns);
   * "changed" (fetch replaces it: `change` says how, `bytesNow` what its files hold now, which
   * `bytes`, from the manifest, does not count); "unsealed" (published by a dsfetch before
   * 2026-12-07: nothing to compare with). Without --check, `list` reads manifests only:
   * a job's writes into a dataset were invisible to it (exploratory review, 2026-12-07).
   */
  readonly state?: "intact" | "times" | "changed" | "unsealed";
  readonly change?: string;
  readonly bytesNow?: number;
  /** With --check: files read-only when published have been made writable by their owner, or by every user. */
  readonly madeWritable?: true;
  /** With --verify: its files read again and compared with their digests (verify-content.ts). */
  readonly content?: ContentCheck;
}

export interface ListOptions {
  /** Told of each dataset directory whose manifest cannot be read (see listDatasets). */
  readonly onUnreadable?: ((dataset: UnreadableDataset) => void) | undefined;
  /** Walk each dataset's tree and compare it with its seal (`state`). */
  readonly check?: boolean;
  /** Read each dataset's files and compare them with their digests (`content`; and `state`). */
  readonly verify?: boolean;
  /** Ends a `verify` between files. */
  readonly signal?: AbortSignal | undefined;
}

/** A published dataset whose manifest cannot be read: not listed, and so never pruned. */
export interface UnreadableDataset {
  readonly path: string;
  readonly manifest: string;
  /** "damaged" (not a manifest dsfetch can read), or the error reading it ("EACCES"). */
  readonly reason: string;
}

/**
 * `call` bounds the calls on the storage (stage/storage-calls.ts: on storage that stopped
 * answering, `list` and `prune` fail with STALLED instead of waiting for good).
 * `onUnreadable`: told of each dataset directory whose manifest is damaged (review,
 * 2026-12-05: it was left out of the list without a word).
 */
export async function listDatasets(
  storageRoot: string,
  team: string,
  call: StorageCall = unboundedCall,
  { onUnreadable, check = false, verify = false, signal }: ListOptions = {},
): Promise<CatalogEntry[]> {
  const dataRoot = sharedDataRoot(storageRoot, team);
  const manifests = join(dataRoot, META_DIR, "manifests");
  const names = await call(`reading ${manifests}`, () =>
    readdir(manifests).catch(async (error: unknown): Promise<string[]> => {
      // No manifests yet is an empty team; a storage root that is not there is a volume not
      // mounted or a typo, which a prune cron reported as "0 datasets" with exit 0 (review).
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") {
        const root = await stat(storageRoot).catch(() => undefined);
        if (root?.isDirectory() === true) return [];
        throw new DsfetchError(
          "STORAGE",
          root === undefined
            ? `${storageRoot} does not exist (is the shared volume mounted?)`
            : `${storageRoot} is not a directory`,
          {
            hint: "check --storage-root (DSFETCH_STORAGE_ROOT) and that the shared volume is mounted",
          },
        );
      }
      throw storageReadError(error, manifests);
    }),
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
      if (manifest === undefined) {
        // There, but not parsed (a removal in progress takes the file away first), or not
        // readable by this user (not to be called damaged: review).
        if (!published || (await readManifest(location.manifestPath)) !== undefined) {
          return undefined;
        }
        const reason = await readFile(location.manifestPath).then(
          (): string | undefined => "damaged",
          (error: NodeJS.ErrnoException) =>
            error.code === "ENOENT" ? undefined : (error.code ?? "error"),
        );
        return reason === undefined ? undefined : { unreadable: reason };
      }
      return {
        manifest,
        used: await lastUsed(location),
        inUse: await activeLeases(location).catch((error: unknown) => [unreadableLeases(error)]),
      };
    });
    if (found === undefined) continue;
    if ("unreadable" in found) {
      onUnreadable?.({
        path: location.path,
        manifest: location.manifestPath,
        reason: found.unreadable ?? "error",
      });
      continue;
    }
    const { manifest, used, inUse } = found;
    entries.push({
      name: manifest.name,
      path: location.path,
      uri: manifest.uri,
      kind: manifest.kind,
      etag: manifest.etag ?? null,
      versionId: manifest.versionId ?? null,
      // What the dataset holds on the storage: an archive's expanded files, not the download
      // (a .tar.gz of text counted at a tenth of its size, and `prune --max-size` left the
      // storage far above its cap: review, 2026-12-05).
      bytes: fileBytes(manifest.files),
      files: manifest.files.length,
      createdAt: manifest.createdAt,
      lastUsed: (used ?? new Date(manifest.createdAt)).toISOString(),
      inUse,
      ...(check || verify ? await checked(location, manifest, call) : {}),
      ...(verify
        ? { content: await verifyContent(location.path, location.manifestPath, call, signal) }
        : {}),
    });
  }
  return entries;
}

/** `list --check`'s fields for the dataset at `location` (published with `manifest`). */
async function checked(
  location: DatasetLocation,
  manifest: Manifest,
  call: StorageCall,
): Promise<Pick<CatalogEntry, "state" | "change" | "bytesNow" | "madeWritable">> {
  if (!isTreeSeal(manifest.seal)) return { state: "unsealed" };
  const staged = await call(`reading ${location.path}`, (_signal, progressed) =>
    inspectStaged(location, progressed),
  );
  // Removed or replaced since it was listed: said as it is now, or not at all.
  if (staged.manifest === undefined) return {};
  const writable = staged.madeWritable === true ? { madeWritable: true as const } : {};
  if (staged.altered === true) {
    const bytesNow = await call(`measuring ${location.path}`, () => bytesUnder(location.path));
    return {
      state: "changed",
      ...(staged.change === undefined ? {} : { change: staged.change }),
      bytesNow,
    };
  }
  return { state: staged.timesChanged === true ? "times" : "intact", ...writable };
}

function storageReadError(error: unknown, path: string): DsfetchError {
  const code = (error as NodeJS.ErrnoException).code;
  return new DsfetchError(
    "STORAGE",
    `cannot read ${path}: ${code === "EACCES" || code === "EPERM" ? "permission denied" : (error as Error).message}`,
    { hint: "check that the shared storage is mounted and readable by this user", cause: error },
  );
}
