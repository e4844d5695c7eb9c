/**
 * `stage()`: the library entry point behind `dsfetch fetch` (and later `run` and
 * `sidecar`). Stages every dataset; one dataset's failure is reported in its result and
 * does not stop the others.
 */
import { DEFAULT_TUNING, type TransferTuning } from "../config/tuning.ts";
import type { DatasetSpec, Settings } from "../config/types.ts";
import { DsfetchError, toDsfetchError } from "../errors.ts";
import { type EventListener, ignoreEvents } from "../events.ts";
import { ClientPool } from "../fetch/client.ts";
import { requireSharedStorage } from "../plan/target.ts";
import { mapLimit } from "../util/map-limit.ts";
import { sharedDataRoot } from "../volumes/layout.ts";
import { mountDataset } from "../volumes/mount.ts";
import { storageAnswers } from "../volumes/storage-probe.ts";
import { type StagedDataset, stageDataset } from "./stage-dataset.ts";

export interface StageOptions {
  onEvent?: EventListener;
  /** Aborting stops every download and removes temporary data; nothing half-done is published. */
  signal?: AbortSignal;
  /** Datasets staged at once (each one is itself parallel). Default 2. */
  concurrency?: number;
  /** Range sizes, concurrency, stall bound (config/tuning.ts). */
  tuning?: TransferTuning;
  /** Link each staged dataset at `<mount-root>/<name>` (volumes/mount.ts). */
  mount?: boolean;
}

export type StageOutcome =
  | ({ readonly ok: true } & StagedDataset)
  | {
      readonly ok: false;
      readonly name: string;
      readonly uri: string;
      readonly error: DsfetchError;
    };

export interface StageResult {
  readonly datasets: readonly StageOutcome[];
  /** True when every dataset is staged. */
  readonly ok: boolean;
}

export async function stage(
  datasets: readonly DatasetSpec[],
  settings: Settings,
  options: StageOptions = {},
): Promise<StageResult> {
  const onEvent = options.onEvent ?? ignoreEvents;
  if (datasets.some((spec) => spec.volume.kind === "shared")) requireSharedStorage(settings);
  const tuning = options.tuning ?? DEFAULT_TUNING;
  const pool = new ClientPool({ idleTimeoutMs: tuning.stallTimeoutMs });
  // Asked once for all datasets, started now: it runs while the first datasets are resolved
  // (a HEAD or a listing), which hides its ~20 ms (a process spawned) on a warm fetch.
  let probe: Promise<boolean> | undefined;
  const sharedStorageAnswers = (): Promise<boolean> => {
    if (probe === undefined) {
      const { storageRoot, team } = requireSharedStorage(settings);
      probe = storageAnswers(
        storageRoot,
        sharedDataRoot(storageRoot, team),
        tuning.storageTimeoutMs,
        {
          signal: options.signal,
        },
      );
    }
    return probe;
  };
  if (datasets.some((spec) => spec.volume.kind === "shared")) void sharedStorageAnswers();
  try {
    const outcomes = await mapLimit(
      datasets,
      options.concurrency ?? 2,
      async (spec): Promise<StageOutcome> => {
        try {
          const staged = await stageDataset(spec, settings, {
            pool,
            onEvent,
            signal: options.signal,
            tuning,
            sharedStorageAnswers,
          });
          if (options.mount === true) {
            await mountDataset(staged.mount, staged.path, spec.name, ownedRoots(settings));
          }
          return { ok: true, ...staged };
        } catch (error) {
          const failure =
            options.signal?.aborted === true
              ? new DsfetchError(
                  "INTERRUPTED",
                  `${spec.name}: interrupted; nothing was published`,
                  {
                    dataset: spec.name,
                    cause: error,
                  },
                )
              : toDsfetchError(error, spec.name);
          return { ok: false, name: spec.name, uri: spec.uri, error: failure };
        }
      },
    );
    return { datasets: outcomes, ok: outcomes.every((outcome) => outcome.ok) };
  } finally {
    pool.destroy();
  }
}

export type StageFailure = Extract<StageOutcome, { ok: false }>;

/** The datasets that failed, in order. */
export function failuresOf(result: StageResult): StageFailure[] {
  return result.datasets.filter((outcome): outcome is StageFailure => !outcome.ok);
}

/** The exit code of a staging result: the first failure's, or 0. */
export function exitCodeOfStage(result: StageResult): number {
  return failuresOf(result)[0]?.error.exitCode ?? 0;
}

/** Where dsfetch's own datasets live: a mount link into one of these is ours to update. */
function ownedRoots(settings: Settings): string[] {
  const roots = [settings.ephemeralRoot];
  if (settings.storageRoot !== undefined && settings.team !== undefined) {
    roots.push(sharedDataRoot(settings.storageRoot, settings.team));
  }
  return roots;
}
