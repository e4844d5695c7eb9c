/**
 * dsfetch's library API. The CLI is a thin shell over these.
 * @example
 *   import { loadDatasets, resolveSettings, plan } from "dsfetch";
 *   const datasets = await loadDatasets({ datasets: "datasets.json", env: process.env });
 *   const result = await plan(datasets, resolveSettings({ storageRoot: "/mnt/shared", team: "ml" }, process.env));
 */
export type { ArchiveFormat } from "./archive/formats.ts";
export { ARCHIVE_EXTENSIONS, archiveFormatOf } from "./archive/formats.ts";
export { parseDatasetEntry } from "./config/dataset.ts";
export { parseDatasetsText, parseDatasetsValue } from "./config/datasets-array.ts";
export { type DatasetsSource, loadDatasets } from "./config/load.ts";
export { resolveSettings, type SettingsInput } from "./config/settings.ts";
export { parseSize } from "./config/size.ts";
export type {
  Credentials,
  DatasetSpec,
  EndpointOptions,
  Settings,
  VolumeSpec,
} from "./config/types.ts";
export { DsfetchError, type ErrorCode, EXIT_CODES } from "./errors.ts";
export type { DsfetchEvent, EventListener } from "./events.ts";
export { type PlanOptions, type PlanResult, plan } from "./plan/dry-run.ts";
export type { PlanEntry, PlanError } from "./plan/plan.ts";
