/**
 * `stage()`: the library entry point behind `dsfetch fetch` (and later `run` and
 * `sidecar`). Stages every dataset; one dataset's failure is reported in its result and
 * does not stop the others.
 */

import { leaseStaged } from "../agent/leases.ts";
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
import type { Lease } from "../volumes/usage.ts";
import { stopGraceMs } from "./progress-watchdog.ts";
import { SharedWrites } from "./shared-writes.ts";
import { type StagedDataset, stageDataset } from "./stage-dataset.ts";
import { StorageCalls } from "./storage-calls.ts";

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
  /**
   * Hold each shared dataset in use from the moment it is staged (agent/leases.ts): `prune`
   * never removes it and a refresh never replaces it until the leases in the result are
   * released (`releaseLeases`). For jobs (`run`, `sidecar`), not for a prefetch.
   */
  lease?: boolean;
  /**
   * Read a staged copy's files again and compare them with their recorded digests before
   * reusing it (`--verify`); a copy that differs is staged again as a changed one is.
   */
  verifyContent?: boolean;
}

export type StageOutcome =
  | ({ readonly ok: true } & Omit<StagedDataset, "mount"> & {
        /**
         * The link made at `<mount-root>/<name>`; null when none was made (`mount` not
         * asked for: `fetch` without --mount). It named a path that did not exist (review).
         */
        readonly mount: string | null;
      })
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
  /** With `lease: true`: one per staged shared dataset, held until released. */
  readonly leases: readonly Lease[];
}

/** Times a dataset is staged again because it was replaced just before its lease was taken. */
const MAX_RESTAGES_FOR_LEASE = 3;

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
  const sharedWrites = new SharedWrites();
  const leases: Lease[] = [];
  try {
    const outcomes = await mapLimit(
      datasets,
      options.concurrency ?? 2,
      async (spec): Promise<StageOutcome> => {
        let lease: Lease | undefined;
        try {
          const stageOnce = () =>
            stageDataset(spec, settings, {
              pool,
              onEvent,
              signal: options.signal,
              tuning,
              sharedStorageAnswers,
              sharedWrites,
              verifyContent: options.verifyContent,
            });
          let staged = await stageOnce();
          // Under the same bound as the staging's calls, and answering an interrupt.
          const { call } = new StorageCalls({
            dataset: spec.name,
            stallMs: tuning.extractStallTimeoutMs,
            graceMs: stopGraceMs(tuning.extractStallTimeoutMs),
            signal: options.signal,
          });
          // Ephemeral datasets too: the default ephemeral root is one per user and machine,
          // shared by that user's jobs there, and a second job refreshed a changed source in
          // place under the first (review, 2026-12-05: it read v1, then v2, from one path).
          for (let restage = 0; options.lease === true; restage++) {
            const taken = await leaseStaged(staged, {
              call,
              etagPinned: spec.etag !== undefined && spec.versionId === undefined,
              onWaiting: (holders) =>
                onEvent({
                  type: "info",
                  dataset: spec.name,
                  message: `${staged.path} is being replaced or removed by ${holders.join(", ")}: waiting for it before holding the dataset`,
                }),
              onUnleased: (message) => onEvent({ type: "warning", dataset: spec.name, message }),
            });
            if (!("replacedBy" in taken)) {
              lease = taken;
              break;
            }
            // A pinned version replaced by another one: another configuration pins that one
            // under the same name. Staged again, each would replace the other's under its
            // jobs in turn (a pinned version does not wait for leases): said at once (review).
            if (spec.versionId !== undefined && taken.replacedBy !== undefined) {
              throw new DsfetchError(
                "OBJECT_CHANGED",
                `${spec.name}: ${staged.path} now holds another version of ${taken.replacedBy.uri} (versionId ${taken.replacedBy.versionId ?? "none"}) than the one this job pins (${spec.versionId}): another configuration stages it under the same name`,
                {
                  dataset: spec.name,
                  expected: spec.versionId,
                  found: taken.replacedBy.versionId ?? "none",
                  hint: "give one of the two configurations another name for this dataset",
                },
              );
            }
            if (restage === MAX_RESTAGES_FOR_LEASE) {
              throw new DsfetchError(
                "OBJECT_CHANGED",
                `${spec.name}: ${staged.path} was replaced by another version each time this job was about to hold it (${MAX_RESTAGES_FOR_LEASE + 1} times)`,
                {
                  dataset: spec.name,
                  hint: "another job or prefetch keeps refreshing it from a source that keeps changing: pin the version (etag or versionId), or retry once it settles",
                },
              );
            }
            onEvent({
              type: "info",
              dataset: spec.name,
              message: `${staged.path} was replaced by another version just before this job held it: staging it again`,
            });
            staged = await stageOnce();
          }
          if (options.mount === true) {
            await mountDataset(staged.mount, staged.path, spec.name, ownedRoots(settings));
          }
          if (lease !== undefined) leases.push(lease);
          return { ok: true, ...staged, mount: options.mount === true ? staged.mount : null };
        } catch (error) {
          await lease?.release().catch(() => {});
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
    return { datasets: outcomes, ok: outcomes.every((outcome) => outcome.ok), leases };
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
