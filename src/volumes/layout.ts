/**
 * Where everything lives (SPEC §2). Pure path computation, no I/O.
 *
 *   <storage-root>/<team>/data/<name>-<etag>      a published dataset (exactly its files)
 *   <storage-root>/<team>/data/<name>             the same without an etag
 *   <storage-root>/<team>/data/.dsfetch/          manifests, locks, temporary attempts:
 *       manifests/<dir>.json  locks/<dir>.lock  tmp/<attempt>/
 *   <ephemeral-root>/<name>                       a dataset on an ephemeral volume
 *   <ephemeral-root>/.dsfetch/                    its manifests and temporary attempts
 *   <mount-root>/<name>                           the read-only view the job uses
 *
 * Dataset names never start with "." (config/s3-uri.ts), so ".dsfetch" cannot collide.
 */
import { join } from "node:path";

export const META_DIR = ".dsfetch";

/** The directory name of a dataset in shared storage. */
export function sharedDirName(name: string, etag: string | undefined): string {
  return etag === undefined ? name : `${name}-${etag}`;
}

export function sharedDataRoot(storageRoot: string, team: string): string {
  return join(storageRoot, team, "data");
}

export interface DatasetLocation {
  /** The final, published dataset directory. */
  readonly path: string;
  /** The directory that holds manifests, locks and temporary data beside it. */
  readonly metaDir: string;
  readonly manifestPath: string;
  readonly lockPath: string;
  /** A recent failure that waiting workers should not repeat (failure-record.ts). */
  readonly failurePath: string;
  readonly tmpDir: string;
}

/** The location of the dataset directory `dirName` under `parent`. */
export function locationIn(parent: string, dirName: string): DatasetLocation {
  const metaDir = join(parent, META_DIR);
  return {
    path: join(parent, dirName),
    metaDir,
    manifestPath: join(metaDir, "manifests", `${dirName}.json`),
    lockPath: join(metaDir, "locks", `${dirName}.lock`),
    failurePath: join(metaDir, "failures", `${dirName}.json`),
    tmpDir: join(metaDir, "tmp"),
  };
}

export function sharedLocation(
  storageRoot: string,
  team: string,
  name: string,
  etag: string | undefined,
): DatasetLocation {
  return locationIn(sharedDataRoot(storageRoot, team), sharedDirName(name, etag));
}

export function ephemeralLocation(ephemeralRoot: string, name: string): DatasetLocation {
  return locationIn(ephemeralRoot, name);
}

export function mountPath(mountRoot: string, name: string): string {
  return join(mountRoot, name);
}
