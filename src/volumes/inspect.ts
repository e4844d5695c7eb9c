/** What is on disk for a dataset: is something published at its final path, with what manifest. */
import { lstat } from "node:fs/promises";
import type { DatasetLocation } from "./layout.ts";
import { type Manifest, readManifest } from "./manifest.ts";

export interface StagedState {
  readonly exists: boolean;
  readonly manifest: Manifest | undefined;
}

export async function inspectStaged(location: DatasetLocation): Promise<StagedState> {
  const exists = await lstat(location.path).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
  const manifest = exists ? await readManifest(location.manifestPath) : undefined;
  return { exists, manifest };
}
