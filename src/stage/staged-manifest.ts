/**
 * The manifest of the version each StagedDataset reports (kept beside it, not in it: the
 * result is what `--json` prints), so that stage() can confirm, once the job's lease is
 * taken, that the version at the path is still that one (agent/leases.ts).
 */
import type { Manifest } from "../volumes/manifest.ts";
import type { StagedDataset } from "./stage-dataset.ts";

const manifests = new WeakMap<StagedDataset, Manifest>();

/** Returns `staged`, remembered as the version `manifest` describes. */
export function withManifest(staged: StagedDataset, manifest: Manifest): StagedDataset {
  manifests.set(staged, manifest);
  return staged;
}

export function manifestOfStaged(staged: StagedDataset): Manifest | undefined {
  return manifests.get(staged);
}
