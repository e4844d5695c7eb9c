/**
 * `plan`: resolve every dataset against its store and look at the disk, writing nothing.
 * A failure of one dataset is reported in its entry; the others are still planned.
 */
import { dirname } from "node:path";
import { DEFAULT_LIMITS } from "../archive/limits.ts";
import { formatBytes } from "../config/size.ts";
import type { DatasetSpec, Settings } from "../config/types.ts";
import { DsfetchError, toDsfetchError } from "../errors.ts";
import { type EventListener, ignoreEvents } from "../events.ts";
import { ClientPool } from "../fetch/client.ts";
import { resolveInBucketRegion } from "../fetch/region-redirect.ts";
import { entriesToWrite, objectCount } from "../fetch/resolve.ts";
import { mapLimit } from "../util/map-limit.ts";
import { abandonedAfterMs, abandonedAttempts } from "../volumes/cleanup.ts";
import { ensureDefaultEphemeralRoot } from "../volumes/ephemeral-root.ts";
import { noRoomNow } from "../volumes/failure-record.ts";
import { inspectStaged } from "../volumes/inspect.ts";
import type { DatasetLocation } from "../volumes/layout.ts";
import { occupantProblemIfKnown } from "../volumes/occupant.ts";
import { copyInWords, replaceRefusal } from "../volumes/permissions.ts";
import { type StorageCall, unboundedCall } from "../volumes/storage-call.ts";
import { inodeShortage, sharedStorageProblem, statfsWhere } from "../volumes/storage-check.ts";
import { usageUnder } from "../volumes/tree-bytes.ts";
import { activeLeases, unreadableLeases } from "../volumes/usage.ts";
import {
  errorOf,
  failedEntry,
  isCached,
  otherVersionFallback,
  otherVersionInUse,
  type PlanEntry,
  type PlanError,
  pinnedCopy,
  pinnedOverOtherVersion,
  pinsData,
  planEntry,
  refreshWaitsForJobs,
  replacedCopyOf,
  sourceOf,
} from "./plan.ts";
import {
  fallbackTarget,
  noFallbackError,
  requireSharedStorage,
  type Target,
  targetFor,
} from "./target.ts";
import { declaredZipBytes } from "./zip-declared.ts";

export interface PlanOptions {
  onEvent?: EventListener;
  signal?: AbortSignal;
  /** Datasets resolved at once. */
  concurrency?: number;
  /**
   * The bound for a dataset's calls on shared storage (the CLI: stage/storage-calls.ts, so
   * that `plan` on storage that stopped answering says STALLED instead of waiting for good).
   */
  storageCalls?: (dataset: string) => StorageCall;
  /** fetch's bound on an archive's expansion in shared storage (DSFETCH_MAX_EXPANDED_SIZE). */
  maxExpandedBytes?: number | undefined;
  /** Retries of a failed request to the store (DSFETCH_RETRIES; default: fetch/retry.ts). */
  retries?: number | undefined;
  /**
   * A connection to the store silent this long is abandoned (DSFETCH_STALL_TIMEOUT, as fetch:
   * stage.ts). Plan waited the client's 30 s whatever it said (README audit, 2026-12-07).
   */
  stallTimeoutMs?: number | undefined;
  /**
   * DSFETCH_LOCK_STALE: with it, when another container's partial download on an ephemeral
   * volume is old enough for fetch to remove (volumes/cleanup.ts abandonedAfterMs).
   */
  lockStaleMs?: number | undefined;
}

export interface PlanResult {
  readonly datasets: readonly PlanEntry[];
}

export async function plan(
  datasets: readonly DatasetSpec[],
  settings: Settings,
  options: PlanOptions = {},
): Promise<PlanResult> {
  const onEvent = options.onEvent ?? ignoreEvents;
  // A missing storage root is a usage error for the whole run, not one per dataset.
  if (datasets.some((spec) => spec.volume.kind === "shared")) requireSharedStorage(settings);
  const pool = new ClientPool({ idleTimeoutMs: options.stallTimeoutMs });
  try {
    const entries = await mapLimit(datasets, options.concurrency ?? 8, async (spec) => {
      let target: Target | undefined;
      try {
        target = targetFor(spec, settings);
        const first = await pool.clientFor(spec);
        onEvent({
          type: "server",
          dataset: spec.name,
          endpoint: first.endpointLabel,
          anonymous: first.anonymous,
        });
        const retry = {
          retries: options.retries,
          signal: options.signal,
          onRetry: (error: unknown, attempt: number) =>
            onEvent({
              type: "warning",
              dataset: spec.name,
              message: `attempt ${attempt} failed (${toDsfetchError(error).message}); retrying`,
            }),
        };
        const { resolution, client } = await resolveInBucketRegion(
          spec,
          first,
          pool,
          retry,
          (region) =>
            onEvent({
              type: "warning",
              dataset: spec.name,
              message: `bucket "${spec.location.bucket}" is in ${region}, not ${spec.endpoint.region}: using ${region} (give "region": "${region}" in the dataset, or AWS_REGION, to save a request)`,
            }),
        );
        onEvent({
          type: "resolved",
          dataset: spec.name,
          kind: resolution.kind,
          bytes: resolution.bytes,
          objects: objectCount(resolution),
        });
        const call = options.storageCalls?.(spec.name) ?? unboundedCall;
        let location = target.location;
        let staged = await call(`reading ${location.manifestPath}`, (_signal, progressed) =>
          inspectStaged(location, progressed),
        );
        // A zip declares what it expands to: read from its central directory (ranged requests
        // into memory), so that the plan refuses what fetch would refuse after the download.
        let zipError: PlanError | undefined;
        const declared =
          spec.archive === "zip" &&
          resolution.kind === "object" &&
          !isCached(resolution, staged, spec)
            ? await declaredZipBytes(resolution, client.getter, {
                maxEntries: DEFAULT_LIMITS.maxEntries,
                checkEntries: true,
                signal: options.signal,
                errorContext: {
                  dataset: spec.name,
                  uri: spec.uri,
                  bucket: spec.location.bucket,
                  versionId: spec.versionId,
                  endpoint: client.endpointLabel,
                  anonymous: client.anonymous,
                  action: "reading the central directory of",
                  retries: options.retries,
                },
              }).catch((error: unknown) => {
                // A zip fetch would refuse: said beside what was resolved (its kind, ETag
                // and size were lost for a null entry: review).
                zipError = errorOf(toDsfetchError(error, spec.name));
                return undefined;
              })
            : undefined;
        if (declared?.warning !== undefined) {
          onEvent({ type: "warning", dataset: spec.name, message: declared.warning });
        }
        // Where fetch would stage it (stage-dataset.ts, fallBack): shared storage that cannot
        // take it sends it to an ephemeral volume, which the plan showed as a shared path that
        // could not exist (review, 2026-12-05). Looked at without writing anything.
        let fallback: string | undefined;
        let refused: PlanError | undefined;
        if (target.volume === "shared" && !isCached(resolution, staged, spec)) {
          const { storageRoot } = requireSharedStorage(settings);
          const dataRoot = dirname(location.path);
          // A zip is downloaded whole, then expanded beside it (stage/expand.ts).
          const needed = resolution.bytes + (declared?.bytes ?? 0);
          const problem = await call(`checking ${storageRoot}`, async () => {
            const now = (
              await sharedStorageProblem(storageRoot, dataRoot, needed, {
                create: false,
                files: entriesToWrite(resolution),
              })
            )?.reason;
            // As fetch: a source that met the full disk before, with no more room now.
            return now ?? (await noRoomNow(location.failurePath, resolution, dataRoot));
          });
          // As fetch: a pinned version whose path holds another version that jobs use.
          const inUse =
            problem === undefined &&
            (pinnedOverOtherVersion(spec, staged.manifest) || staged.altered === true)
              ? await call(`reading the leases of ${location.path}`, () =>
                  activeLeases(location).catch((error: unknown) => [unreadableLeases(error)]),
                )
              : [];
          // As fetch: an older copy to replace that is a teammate's (permissions.ts).
          const notOurs =
            problem === undefined && inUse.length === 0 && staged.manifest !== undefined
              ? await call(`looking at ${location.path}`, () =>
                  replaceRefusal(location.path, {
                    lookOnly: true,
                    copy: copyInWords(
                      staged.altered === true,
                      isCached(resolution, { ...staged, altered: false }, spec),
                    ),
                  }),
                )
              : undefined;
          const reason =
            problem !== undefined
              ? `shared storage is unavailable: ${problem}`
              : inUse.length > 0
                ? otherVersionFallback(
                    spec,
                    location.path,
                    inUse,
                    staged.altered === true,
                    staged.change,
                  )
                : notOurs;
          // As fetch under --no-fallback: the dataset fails where it would have fallen back.
          if (reason !== undefined && settings.fallback === false) {
            refused = errorOf(noFallbackError(spec, reason));
          } else if (reason !== undefined) {
            fallback = reason;
            target = fallbackTarget(spec, settings);
            const ephemeral = target.location;
            location = ephemeral;
            staged = await call(`reading ${ephemeral.manifestPath}`, (_signal, progressed) =>
              inspectStaged(ephemeral, progressed),
            );
          }
        }
        if (target.volume === "ephemeral" && settings.ephemeralRootIsDefault === true) {
          // What fetch would refuse before reading there (review: plan said "cached").
          const root = dirname(location.path);
          await call(`looking at ${root}`, () =>
            ensureDefaultEphemeralRoot(root, { create: false }),
          );
        }
        // What fetch checks on an ephemeral volume before the first byte: room on the disk
        // under the root for the download, and for a zip its expansion beside it (review:
        // plan passed what fetch then refused).
        let ephemeralRoom: PlanError | undefined;
        if (target.volume === "ephemeral" && !isCached(resolution, staged, spec)) {
          const root = dirname(location.path);
          const needed = resolution.bytes + (declared?.bytes ?? 0);
          const found = await call(`checking the free space of ${root}`, () => statfsWhere(root));
          const free = found === undefined ? undefined : found.bavail * found.bsize;
          // fetch first removes the partial downloads of runs that are over (a job killed
          // mid-download: stage-dataset.ts), then checks: their room counts as free here
          // (plan said NO_SPACE where fetch then fitted).
          const tight =
            found !== undefined &&
            (needed > found.bavail * found.bsize ||
              inodeShortage(root, found, entriesToWrite(resolution)) !== undefined);
          const reclaimable = tight
            ? await call(`reading ${location.tmpDir}`, () =>
                leftoverUsage(location, options.lockStaleMs),
              )
            : { bytes: 0, entries: 0 };
          if (free !== undefined && needed > free + reclaimable.bytes) {
            ephemeralRoom = errorOf(
              new DsfetchError(
                "NO_SPACE",
                `${spec.name}: needs ${formatBytes(needed)} (${needed} bytes${declared === undefined ? "" : ": the zip and what its entries declare"}) but ${root} (its ephemeral volume) has ${formatBytes(free)} (${free} bytes) free`,
                {
                  dataset: spec.name,
                  hint: "free space there, or point --ephemeral-root (DSFETCH_EPHEMERAL_ROOT) at a larger disk",
                },
              ),
            );
          }
          // As fetch: too few inodes for the folder's files (the leftovers' count as free too:
          // review, 2026-12-07).
          const inodes =
            found === undefined
              ? undefined
              : inodeShortage(
                  `${root} (its ephemeral volume)`,
                  { files: found.files, ffree: found.ffree + reclaimable.entries },
                  entriesToWrite(resolution),
                );
          if (ephemeralRoom === undefined && inodes !== undefined) {
            ephemeralRoom = errorOf(
              new DsfetchError("NO_SPACE", `${spec.name}: ${inodes}`, {
                dataset: spec.name,
                hint: "free space there, or point --ephemeral-root (DSFETCH_EPHEMERAL_ROOT) at a larger disk",
              }),
            );
          }
        }
        const withFallback = (planned: PlanEntry): PlanEntry => {
          let entry = planned;
          if (declared !== undefined && entry.kind !== null) {
            entry = { ...entry, expandedBytes: declared.bytes };
            // fetch's bound: the volume's size, or DSFETCH_MAX_EXPANDED_SIZE on shared storage.
            const bound = target?.volumeBytes ?? options.maxExpandedBytes;
            if (entry.error === undefined && bound !== undefined && declared.bytes > bound) {
              entry = {
                ...entry,
                error: zipOverBound(
                  spec.name,
                  declared.bytes,
                  bound,
                  target?.volumeBytes === undefined,
                ),
              };
            }
          }
          if (entry.error === undefined && refused !== undefined) {
            entry = { ...entry, error: refused };
          }
          if (entry.error === undefined && ephemeralRoom !== undefined) {
            entry = { ...entry, error: ephemeralRoom };
          }
          if (entry.error === undefined && zipError !== undefined) {
            entry = { ...entry, error: zipError };
          }
          return fallback === undefined ? entry : { ...entry, fallback };
        };
        if (!isCached(resolution, staged, spec)) {
          // What fetch would refuse (volumes/occupant.ts), said by the plan too.
          const problem = await call(`looking at ${location.path}`, () =>
            occupantProblemIfKnown(spec.name, location, sourceOf(spec), staged.manifest),
          );
          if (problem !== undefined) return withFallback(failedEntry(spec, target, problem));
          // What fetch refuses on an ephemeral path (stage-dataset.ts, OtherVersionInUse).
          // Or a tree changed since it was published (volumes/inspect.ts), in use.
          const altered = staged.altered === true;
          if (
            target.volume === "ephemeral" &&
            (altered || pinnedOverOtherVersion(spec, staged.manifest))
          ) {
            const users = await call(`reading the leases of ${location.path}`, () =>
              activeLeases(location).catch((error: unknown) => [unreadableLeases(error)]),
            );
            if (users.length > 0) {
              const refused = otherVersionInUse(spec, location.path, users, {
                altered,
                change: staged.change,
              });
              return withFallback(failedEntry(spec, target, refused));
            }
          }
          // What fetch would keep (stage-dataset.ts, keptInUse), said by the plan too.
          if (!altered && refreshWaitsForJobs(spec, staged.manifest)) {
            const users = await call(`reading the leases of ${location.path}`, () =>
              activeLeases(location).catch((error: unknown) => [unreadableLeases(error)]),
            );
            if (users.length > 0) {
              // The version that stays, as fetch reports it.
              const kept = staged.manifest;
              return {
                ...planEntry(spec, resolution, staged, target),
                kind: kept.kind,
                etag: kept.etag ?? null,
                versionId: kept.versionId ?? null,
                bytes: kept.bytes,
                objects: kept.kind === "prefix" ? kept.files.length : 1,
                cached: true,
                keptInUse: users,
                // Given to the job as it is: what fetch says of it, as for a cached one.
                ...(staged.timesChanged === true ? { timesChanged: true as const } : {}),
                ...(staged.madeWritable === true ? { madeWritable: true as const } : {}),
              };
            }
          }
        }
        return withFallback(planEntry(spec, resolution, staged, target));
      } catch (error) {
        const failed = toDsfetchError(error, spec.name);
        const call = options.storageCalls?.(spec.name) ?? unboundedCall;
        const copy =
          target === undefined
            ? undefined
            : await pinnedCopyWhileUnreachable(spec, target, failed, call).catch(() => undefined);
        return copy ?? failedEntry(spec, target, failed);
      }
    });
    return { datasets: entries };
  } finally {
    pool.destroy();
  }
}

/**
 * As fetch (stage/stage-dataset.ts stagedCopyOfPin): a store that cannot be reached and a
 * dataset pinned by its ETag or its versionId (plan.ts pinsData) whose copy is staged (same
 * source, and the pinned ETag and versionId): fetch uses that copy, so the plan says "cached"
 * (it said TRANSIENT: the plan disagreed with the fetch it describes). A copy changed since it
 * was published is not used: fetch says so and fails with the store's error, or PATH_TAKEN
 * while jobs use it; the plan says the same (it said only the store's error).
 */
async function pinnedCopyWhileUnreachable(
  spec: DatasetSpec,
  target: Target,
  error: DsfetchError,
  call: StorageCall,
): Promise<PlanEntry | undefined> {
  if (error.code !== "TRANSIENT" || !pinsData(spec)) return undefined;
  const { location } = target;
  const staged = await call(`reading ${location.manifestPath}`, (_signal, progressed) =>
    inspectStaged(location, progressed),
  );
  const copy = pinnedCopy(spec, staged.manifest);
  if (copy === undefined || staged.manifest === undefined) return undefined;
  if (staged.altered === true) {
    const users = await call(`reading the leases of ${location.path}`, () =>
      activeLeases(location).catch((error: unknown) => [unreadableLeases(error)]),
    );
    if (users.length > 0) {
      const refused = otherVersionInUse(spec, location.path, users, {
        altered: true,
        change: staged.change,
      });
      return failedEntry(spec, target, refused);
    }
    return {
      ...failedEntry(spec, target, error),
      replaces: replacedCopyOf(staged.manifest, staged),
    };
  }
  return { ...planEntry(spec, copy, staged, target), storeUnreachable: error.message };
}

/** What fetch says of a zip whose entries do not fit its bound (stage/expand.ts). */
function zipOverBound(
  dataset: string,
  declared: number,
  bound: number,
  setting: boolean,
): PlanError {
  return errorOf(
    new DsfetchError(
      "NO_SPACE",
      setting
        ? `${dataset}: the zip archive's entries declare ${formatBytes(declared)} (${declared} bytes), more than the limit of ${bound} bytes (DSFETCH_MAX_EXPANDED_SIZE)`
        : `${dataset}: the zip archive's entries declare ${formatBytes(declared)} (${declared} bytes) but its ephemeral volume holds ${formatBytes(bound)} (${bound} bytes)`,
      {
        dataset,
        hint: setting
          ? "raise DSFETCH_MAX_EXPANDED_SIZE if the archive is meant to expand that much, or split the archive"
          : "give the dataset a larger volume (volumeOptions.size), or split the archive",
      },
    ),
  );
}

/** Bytes of the partial downloads fetch would remove before staging (its clean-up's rule). */
async function leftoverUsage(
  location: DatasetLocation,
  lockStaleMs: number | undefined,
): Promise<{ bytes: number; entries: number }> {
  const paths = await abandonedAttempts(
    location,
    lockStaleMs === undefined ? Number.POSITIVE_INFINITY : abandonedAfterMs(lockStaleMs),
  );
  const total = { bytes: 0, entries: 0 };
  for (const path of paths) {
    const { bytes, entries } = await usageUnder(path);
    total.bytes += bytes;
    total.entries += entries;
  }
  return total;
}
