/**
 * dsfetch's library API. The CLI is a thin shell over these.
 *
 * @example
 *   import { loadDatasets, resolveSettings, stage } from "dsfetch";
 *   const datasets = await loadDatasets({ datasets: "datasets.json", env: process.env });
 *   const settings = resolveSettings({ storageRoot: "/mnt/shared", team: "ml" }, process.env);
 *   const result = await stage(datasets, settings, { onEvent: (event) => console.error(event) });
 *   for (const dataset of result.datasets) {
 *     if (dataset.ok) console.log(dataset.name, dataset.path);
 *     else console.error(dataset.error.message);
 *   }
 */

export { releaseLeases } from "./agent/leases.ts";
export type { ArchiveFormat } from "./archive/formats.ts";
export { ARCHIVE_EXTENSIONS, archiveFormatOf } from "./archive/formats.ts";
export { parseDatasetEntry } from "./config/dataset.ts";
export { parseDatasetsText, parseDatasetsValue } from "./config/datasets-array.ts";
export { type DatasetsSource, loadDatasets } from "./config/load.ts";
export { resolveSettings, type SettingsInput } from "./config/settings.ts";
export { parseSize } from "./config/size.ts";
export {
  DEFAULT_TUNING,
  type LockTiming,
  resolveTuning,
  type TransferTuning,
} from "./config/tuning.ts";
export type {
  Credentials,
  DatasetSpec,
  EndpointOptions,
  Settings,
  VolumeSpec,
} from "./config/types.ts";
export { DsfetchError, type ErrorCode, EXIT_CODES } from "./errors.ts";
export type { DsfetchEvent, EventListener } from "./events.ts";
export { datasetEnvName } from "./k8s/env-names.ts";
export { type PlanOptions, type PlanResult, plan } from "./plan/dry-run.ts";
export type { PlanEntry, PlanError } from "./plan/plan.ts";
export { type StageOptions, type StageOutcome, type StageResult, stage } from "./stage/stage.ts";
export type { StagedDataset } from "./stage/stage-dataset.ts";
export { type CatalogEntry, listDatasets } from "./volumes/catalog.ts";
export { type PruneOptions, type PruneResult, prune } from "./volumes/prune.ts";
export { type Lease, takeLease } from "./volumes/usage.ts";
