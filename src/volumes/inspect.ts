/** What is on disk for a dataset: is something published at its final path, with what manifest. */
import { lstat } from "node:fs/promises";
import type { DatasetLocation } from "./layout.ts";
import type { Manifest } from "./manifest.ts";
import { manifestOfTree } from "./occupant.ts";

export interface StagedState {
  readonly exists: boolean;
  readonly manifest: Manifest | undefined;
}

export async function inspectStaged(location: DatasetLocation): Promise<StagedState> {
  const exists = await lstat(location.path).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
  // A manifest over another tree than the one it names is not that tree's (occupant.ts).
  const manifest = exists ? await manifestOfTree(location) : undefined;
  return { exists, manifest };
}
