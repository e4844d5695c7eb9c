/**
 * Staging one dataset: resolve it, reuse it when published data matches the store,
 * otherwise download into a private attempt directory, verify, and publish atomically.
 * Nothing half-done is ever visible at the final path; a failure removes the attempt.
 */
import { readdir } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { DEFAULT_LIMITS } from "../archive/limits.ts";
import { baseNameOfKey, sameSource, sameSourceAt } from "../config/s3-uri.ts";
import { formatBytes } from "../config/size.ts";
import type { TransferTuning } from "../config/tuning.ts";
import type { DatasetSpec, Settings } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";
import type { EventListener } from "../events.ts";
import type { ClientPool, StoreClient } from "../fetch/client.ts";
import { downloadObject } from "../fetch/download-object.ts";
import { checkPrefixKeys, downloadPrefix } from "../fetch/download-prefix.ts";
import { keptFor, keptMessage, moveKept, VerifiedObjects } from "../fetch/kept-objects.ts";
import { learnParts } from "../fetch/parts.ts";
import { resolveInBucketRegion } from "../fetch/region-redirect.ts";
import {
  entriesToWrite,
  objectCount,
  type Resolution,
  type ResolvedObject,
  type ResolvedPrefix,
  resolveDataset,
} from "../fetch/resolve.ts";
import type { RetryOptions } from "../fetch/retry.ts";
import type { S3ErrorContext } from "../fetch/s3-errors.ts";
import { partsToLearn } from "../fetch/verification.ts";
import {
  isCached,
  otherVersionFallback,
  otherVersionInUse,
  pinInWords,
  pinnedCopy,
  pinnedOverOtherVersion,
  pinsData,
  type ReplacedCopy,
  refreshWaitsForJobs,
  replacedCopyOf,
  sourceOf,
} from "../plan/plan.ts";
import {
  fallbackTarget,
  noFallbackError,
  requireSharedStorage,
  type Target,
  targetFor,
} from "../plan/target.ts";
import { settleWithin } from "../util/settle-within.ts";
import { noteStuckThread } from "../util/stuck-threads.ts";
import { untilOrAborted } from "../util/until-or-aborted.ts";
import {
  type Attempt,
  createAttempt,
  discardAttempt,
  isStorageFull,
  keepAttemptFresh,
  storageError,
} from "../volumes/attempt.ts";
import { abandonedAfterMs as abandonedAfter, cleanAbandonedAttempts } from "../volumes/cleanup.ts";
import { EarlyWriteback, SETTLE_LIMIT_MS } from "../volumes/early-writeback.ts";
import { ensureDefaultEphemeralRoot } from "../volumes/ephemeral-root.ts";
import {
  clearFailure,
  failureOfAwaitedHolder,
  noRoomNow,
  passOnFailure,
  recordFailure,
} from "../volumes/failure-record.ts";
import { inspectStaged, type StagedState } from "../volumes/inspect.ts";
import {
  acquireLock,
  describeHolder,
  type HeldLock,
  type Holder,
  lockHeld,
} from "../volumes/lock.ts";
import {
  fileBytes,
  MANIFEST_VERSION,
  type Manifest,
  type ManifestFile,
  type WrittenFiles,
} from "../volumes/manifest.ts";
import { occupantProblemIfKnown } from "../volumes/occupant.ts";
import { copyInWords, replaceRefusal } from "../volumes/permissions.ts";
import { publish, SupersededWhilePublishing } from "../volumes/publish.ts";
import { postRemovalNoticeWithin, type RemovalNotice } from "../volumes/removal-notice.ts";
import type { StorageCall } from "../volumes/storage-call.ts";
import {
  inodeShortage,
  type StorageProblem,
  sharedStorageProblem,
  statfsWhere,
} from "../volumes/storage-check.ts";
import { SYNC_LIMIT_MS } from "../volumes/sync-tree.ts";
import { bytesUnder } from "../volumes/tree-bytes.ts";
import {
  activeLeasesBeforeRemoval,
  makeBookkeepingDirs,
  markUsed,
  unreadableLeases,
} from "../volumes/usage.ts";
import { verifyContent } from "../volumes/verify-content.ts";
import { ProgressTracker } from "./progress.ts";
import { stopGraceMs, watchProgress } from "./progress-watchdog.ts";
import type { SharedWrites } from "./shared-writes.ts";
import { manifestOfStaged, withManifest } from "./staged-manifest.ts";
import { StorageCalls } from "./storage-calls.ts";

/** One dataset's outcome. Field names are the `fetch --json` output: keep them stable. */
export interface StagedDataset {
  readonly name: string;
  readonly uri: string;
  readonly kind: "object" | "prefix";
  readonly etag: string | null;
  readonly versionId: string | null;
  readonly path: string;
  readonly mount: string;
  readonly volume: "shared" | "ephemeral";
  readonly bytes: number;
  readonly objects: number;
  /** True when published data was reused without downloading. */
  readonly cached: boolean;
  /** How the bytes were verified: { "md5": 1 } or, for folders, a count per method. */
  readonly verification: Readonly<Record<string, number>>;
  readonly seconds: number;
  readonly retries: number;
  readonly refetchedBytes: number;
  /** Why a shared dataset went to an ephemeral volume instead, when it did. */
  readonly fallback?: string;
  /**
   * Its source changed, but the published version was kept: in use by these ("host pid N").
   */
  readonly keptInUse?: readonly string[];
  /**
   * The store could not be reached (this error, once the retries were spent), and the staged
   * copy of the pinned ETag or version was used without asking it (stagedCopyOfPin).
   */
  readonly storeUnreachable?: string;
  /**
   * The copy this run replaced at its path: an older version of the same source, or this one
   * changed since it was published (`changed`, and `change` saying how), as plan's `replaces`
   * (an exploratory review, 2026-12-07: fetch --json did not say why it downloaded again).
   */
  readonly replaced?: ReplacedCopy;
  /**
   * Reused with files of other modification times than when it was published (same names
   * and sizes: volumes/inspect.ts), or made writable since: the warnings', for automation
   * (exploratory review, 2026-12-07).
   */
  readonly timesChanged?: true;
  readonly madeWritable?: true;
  /**
   * This worker's lock was taken over (it was paused past DSFETCH_LOCK_STALE) and the version
   * another worker published meanwhile is used instead of this run's download: with its
   * warning; `cached` alone read as an ordinary reuse (second review, 2026-12-07).
   */
  readonly lockTakenOver?: true;
}

export interface StageContext {
  readonly pool: ClientPool;
  readonly onEvent: EventListener;
  readonly signal?: AbortSignal | undefined;
  readonly tuning: TransferTuning;
  /**
   * Whether shared storage answered the start-up probe (volumes/storage-probe.ts), asked once
   * per run; absent: not asked (library callers staging one dataset directly).
   */
  readonly sharedStorageAnswers?: (() => Promise<boolean>) | undefined;
  /** The run's writes to shared storage (shared-writes.ts); absent: no retry after a full disk. */
  readonly sharedWrites?: SharedWrites | undefined;
  /** `--verify`: a copy about to be reused is read again against its digests (stage.ts). */
  readonly verifyContent?: boolean | undefined;
}

/** Times a download starts over because the object was replaced during it (no etag pinned). */
const MAX_VERSION_RESTARTS = 3;

/**
 * Shared storage that ran out of space while the dataset was written to it (an archive whose
 * expansion does not fit, another writer filling the disk, two datasets that fit alone but
 * not together): thrown out of the staging on shared storage, which is then done again on an
 * ephemeral volume (SPEC §6: "falls back … when shared storage is unavailable (… not enough
 * space)"; review, 2026-12-05: it failed with NO_SPACE instead).
 */
class SharedStorageFull extends DsfetchError {
  readonly reason: string;
  readonly resolution: Resolution;
  /** Other datasets of the run were being written to shared storage then (shared-writes.ts). */
  readonly othersWriting: boolean;

  constructor(reason: string, resolution: Resolution, error: DsfetchError, othersWriting: boolean) {
    super("NO_SPACE", error.message, { dataset: error.dataset, hint: error.hint, cause: error });
    this.reason = reason;
    this.resolution = resolution;
    this.othersWriting = othersWriting;
  }
}

export async function stageDataset(
  spec: DatasetSpec,
  settings: Settings,
  context: StageContext,
): Promise<StagedDataset> {
  const started = performance.now();
  let full: SharedStorageFull;
  try {
    return await stageOn(spec, settings, context, started, undefined);
  } catch (error) {
    if (!(error instanceof SharedStorageFull)) throw error;
    full = error;
  }
  context.signal?.throwIfAborted();
  const writes = context.sharedWrites;
  if (writes !== undefined && full.othersWriting) {
    // Maybe full only because other datasets of this run were written at the same time:
    // once they are done, shared storage is tried once more (shared-writes.ts).
    context.onEvent({
      type: "info",
      dataset: spec.name,
      message: `${full.reason}, while other datasets of this run were written there too: trying shared storage again once they are done`,
    });
    const again = await writes.retryAlone(() =>
      stageOn(spec, settings, context, started, undefined).catch((error: unknown) => {
        if (error instanceof SharedStorageFull) return error;
        throw error;
      }),
    );
    if (!(again instanceof SharedStorageFull)) return again;
    full = again;
    context.signal?.throwIfAborted();
  }
  try {
    return await stageOn(spec, settings, context, started, full);
  } catch (onEphemeral) {
    throw withFallbackContext(onEphemeral, full.reason);
  }
}

/**
 * A dataset that does not fit its fallback volume either: the error says that shared storage
 * was full first, and the hint is to make room there, not to size a volume the dataset
 * never asked for.
 */
function withFallbackContext(error: unknown, reason: string): unknown {
  if (!(error instanceof DsfetchError) || error.code !== "NO_SPACE") return error;
  if (error.message.includes(reason)) return error;
  // The disk under the ephemeral root too small: its own hint stays (review: lost).
  // Or the disk under it full while writing (its volume's size was not the bound): that disk.
  const alternative = error.hint?.includes("--ephemeral-root")
    ? error.hint
    : isStorageFull(error)
      ? "free space on the disk under the ephemeral root, or point --ephemeral-root (DSFETCH_EPHEMERAL_ROOT) at a larger disk"
      : "give the dataset volumeOptions with a size above what it needs";
  return new DsfetchError(
    "NO_SPACE",
    `${error.message} (staged on an ephemeral volume because ${reason})`,
    {
      dataset: error.dataset,
      expected: error.expected,
      found: error.found,
      hint: `free space in shared storage (dsfetch prune) and run again; or ${alternative}`,
      cause: error,
    },
  );
}

async function stageOn(
  spec: DatasetSpec,
  settings: Settings,
  context: StageContext,
  started: number,
  sharedFull: SharedStorageFull | undefined,
): Promise<StagedDataset> {
  let target = targetFor(spec, settings);
  let fallback: string | undefined;
  let client = await context.pool.clientFor(spec);
  if (sharedFull === undefined) {
    context.onEvent({
      type: "server",
      dataset: spec.name,
      endpoint: client.endpointLabel,
      anonymous: client.anonymous,
    });
  }
  // Every call on the storage outside the download's clock gets an answer within the stall
  // bound, or the dataset fails with STALLED (storage-calls.ts).
  const storage = new StorageCalls({
    dataset: spec.name,
    stallMs: context.tuning.extractStallTimeoutMs,
    graceMs: stopGraceMs(context.tuning.extractStallTimeoutMs),
    signal: context.signal,
  });
  const { call } = storage;
  /**
   * Bookkeeping that never fails staging (the use mark, a cleared failure record): a stall
   * there leaves the call to the kernel (noted: util/stuck-threads.ts), not the dataset
   * failed (found in review: a published or cached dataset failed on its use mark).
   */
  const bestEffort = (what: string, work: () => Promise<void>): Promise<void> =>
    call(what, work).catch((error: unknown) => {
      // An interrupt is still one (found in review: swallowed here, a dataset interrupted
      // while publishing was reported staged, and `run` started its command).
      if (!(error instanceof DsfetchError && error.code === "STALLED")) throw error;
    });
  let retries = 0;
  const retry: RetryOptions = {
    retries: context.tuning.retries,
    signal: context.signal,
    onRetry: (error, attempt, delayMs) => {
      retries += 1;
      context.onEvent({
        type: "retry",
        dataset: spec.name,
        attempt,
        delayMs,
        reason: error instanceof Error ? error.message : String(error),
      });
    },
  };
  const resolve = async (): Promise<Resolution> => {
    const found = await resolveInBucketRegion(spec, client, context.pool, retry, (region) =>
      context.onEvent({
        type: "warning",
        dataset: spec.name,
        message: `bucket "${spec.location.bucket}" is in ${region}, not ${spec.endpoint.region}: using ${region} (give "region": "${region}" in the dataset, or AWS_REGION, to save a request)`,
      }),
    );
    client = found.client;
    const { resolution } = found;
    context.onEvent({
      type: "resolved",
      dataset: spec.name,
      kind: resolution.kind,
      bytes: resolution.bytes,
      objects: objectCount(resolution),
    });
    return resolution;
  };
  const summaryOf = (resolution: Resolution) => ({
    name: spec.name,
    uri: spec.uri,
    kind: resolution.kind,
    etag: resolution.kind === "object" ? resolution.etag : null,
    versionId: resolution.kind === "object" ? (resolution.versionId ?? null) : null,
    path: target.location.path,
    mount: target.mount,
    volume: target.volume,
    bytes: resolution.bytes,
    objects: objectCount(resolution),
    ...(fallback === undefined ? {} : { fallback }),
  });
  /**
   * The manifest at the dataset's path when this worker last looked before downloading
   * (reuse): one there at publishing time that is not this one was published meanwhile.
   */
  let seenBeforeDownload: Manifest | undefined;
  /** That copy, in words (volumes/permissions.ts copyInWords). */
  let seenCopy: string | undefined;
  /** Trees already said to be changed since published (by their manifest's creation). */
  const saidAltered = new Set<string>();
  /**
   * Files of a published tree made writable by their owner since (a job's `chmod -R u+w`),
   * the data as it was: said, not silently given to the job writable (exploratory review,
   * 2026-12-07). Not chmod'ed back: the walk would chmod by name, and a job of the tree's owner
   * could swap a directory for a link mid-walk (to /etc/shadow under root's run; to the
   * user's own keys through a teammate's rename in the group-writable data directory).
   */
  const sayMadeWritable = (published: Manifest): void => {
    if (saidAltered.has(`writable ${published.createdAt}`)) return;
    saidAltered.add(`writable ${published.createdAt}`);
    const { path } = target.location;
    context.onEvent({
      type: "warning",
      dataset: spec.name,
      message: `files of ${path} have been made writable by their owner since it was published (${published.createdAt}), or by every user; its names and sizes are as published (its bytes were not read: \`dsfetch list --verify\` reads them), but jobs of that user (or of any user) may change it: the owner can run chmod -R a-w ${path}, and jobs should get the storage read-only`,
    });
  };
  /**
   * Files of a published tree with other modification times, nothing else changed (names,
   * sizes): reused, and said once (volumes/tree-seal.ts says why it is not taken for a change).
   */
  const sayTimesChanged = (published: Manifest): void => {
    if (saidAltered.has(`times ${published.createdAt}`)) return;
    saidAltered.add(`times ${published.createdAt}`);
    context.onEvent({
      type: "warning",
      dataset: spec.name,
      message: `files of ${target.location.path} have other modification times than when it was published (${published.createdAt}), with the same names and sizes: used as it is. A job may have rewritten some in place (to stage it again, remove it once no job uses it: chmod -R u+w ${target.location.path} && rm -rf ${target.location.path}), or the storage sets times on its own (SMB, some NFS servers)`,
    });
  };
  /**
   * A published tree changed since (volumes/inspect.ts: a job of the same user made it
   * writable and wrote to it) is never reused: said once, and staged again.
   */
  const sayAltered = (published: Manifest, change: string | undefined): void => {
    if (saidAltered.has(published.createdAt)) return;
    saidAltered.add(published.createdAt);
    context.onEvent({
      type: "warning",
      dataset: spec.name,
      message: `${target.location.path} was changed after it was published (${published.createdAt}): ${change ?? "files were added, removed, renamed or resized since"}; it is not used: a fresh copy of ${spec.uri} replaces it once no job uses it (what was written into it goes with it), or, while jobs use it or where this user may not replace it, this run stages its own copy in an ephemeral volume`,
    });
  };
  /**
   * Copies `--verify` found with files that no longer match their digests, by manifest: each
   * later look at the path (after the lock, before publishing) takes such a copy for a changed
   * one too; it was reused again after the lock, by its seal alone.
   */
  const damagedCopies = new Map<string, string>();
  const inspectHere = async (progressed?: () => void): Promise<StagedState> => {
    const staged = await inspectStaged(target.location, progressed);
    const identity = manifestIdentity(staged.manifest);
    const change = identity === undefined ? undefined : damagedCopies.get(identity);
    if (change === undefined || staged.altered === true) return staged;
    const { timesChanged: _times, ...rest } = staged;
    return { ...rest, altered: true, change };
  };
  /** The published dataset, when its manifest matches the store; no lock needed to read it. */
  const reuse = async (resolution: Resolution): Promise<StagedDataset | undefined> => {
    if (target.volume === "ephemeral" && settings.ephemeralRootIsDefault === true) {
      // Before anything is read there or written: the first step on every ephemeral path.
      const root = dirname(target.location.path);
      await call(`looking at ${root}`, () => ensureDefaultEphemeralRoot(root));
    }
    let staged = await call(`reading ${target.location.manifestPath}`, (_signal, progressed) =>
      inspectHere(progressed),
    );
    // `--verify`: the copy that would be reused is read again; bytes changed in place with
    // sizes and times kept (which the seal cannot see) make it a changed copy, staged again as
    // one (not under a job that uses it). A copy `list --verify` found damaged was reused by
    // every later fetch without a word (second exploratory tester, 2026-12-08).
    if (
      context.verifyContent === true &&
      staged.altered !== true &&
      staged.manifest !== undefined &&
      isCached(resolution, staged, spec)
    ) {
      const content = await verifyContent(
        target.location.path,
        target.location.manifestPath,
        call,
        context.signal,
      );
      if (content.mismatched > 0) {
        const change = `${content.mismatched} file${content.mismatched === 1 ? "" : "s"} no longer match${content.mismatched === 1 ? "es" : ""} ${content.mismatched === 1 ? "its" : "their"} recorded digest${content.mismatched === 1 ? "" : "s"} (${content.examples[0] ?? ""})`;
        const identity = manifestIdentity(staged.manifest);
        if (identity !== undefined) damagedCopies.set(identity, change);
        const { timesChanged: _times, ...rest } = staged;
        staged = { ...rest, altered: true, change };
      }
    }
    seenBeforeDownload = staged.manifest;
    seenCopy = copyInWords(
      staged.altered === true,
      isCached(resolution, { ...staged, altered: false }, spec),
    );
    if (staged.altered === true && staged.manifest !== undefined) {
      sayAltered(staged.manifest, staged.change);
    }
    if (staged.timesChanged === true && staged.manifest !== undefined) {
      sayTimesChanged(staged.manifest);
    }
    if (!isCached(resolution, staged, spec) || staged.manifest === undefined) {
      // Not ours to replace (another source's dataset, a directory dsfetch did not write):
      // said now, before the download (publish checks again: volumes/occupant.ts).
      const problem = await call(`looking at ${target.location.path}`, () =>
        occupantProblemIfKnown(spec.name, target.location, sourceOf(spec), staged.manifest),
      );
      if (problem !== undefined) throw problem;
      return keptInUse(resolution, staged);
    }
    if (target.volumeBytes !== undefined) {
      // Staged earlier with a larger volumeOptions.size: what a fresh run would refuse is not
      // reused either (review, 2026-12-05). Left in place: nothing stored is lost.
      const held = fileBytes(staged.manifest.files);
      if (held > target.volumeBytes) {
        throw volumeTooSmall(spec, held, target.volumeBytes, fallback, target.location.path);
      }
    }
    if (staged.madeWritable === true) sayMadeWritable(staged.manifest);
    await bestEffort(`marking ${target.location.path} used`, () => markUsed(target.location));
    context.signal?.throwIfAborted();
    context.onEvent({ type: "cached", dataset: spec.name, path: target.location.path });
    return withManifest(
      {
        ...summaryOf(resolution),
        cached: true,
        verification: { [staged.manifest.verification]: objectCount(resolution) },
        seconds: elapsed(started),
        retries,
        refetchedBytes: 0,
        // As the warnings say, for automation (plan had them, fetch --json did not).
        ...(staged.timesChanged === true ? { timesChanged: true as const } : {}),
        ...(staged.madeWritable === true ? { madeWritable: true as const } : {}),
      },
      staged.manifest,
    );
  };

  /**
   * A dataset of the same source, not pinned to a version, that changed since it was published
   * and is in use (leases: `run`, `sidecar`): kept as it is, not replaced under the jobs that
   * read it (review, 2026-12-05: a job's late worker replaced the folder under the others,
   * which then read two versions). The first run once no job uses it refreshes it.
   */
  const keptInUse = async (
    resolution: Resolution,
    /**
     * What is at the path (volumes/inspect.ts). `altered`: this version, changed since it was
     * published: never kept, and not replaced under the jobs that use it either
     * (OtherVersionInUse, with `change`).
     */
    { manifest: published, altered = false, change, timesChanged, madeWritable }: StagedState,
    /** Under a removal notice: its clock (RemovalNotice.storageNow), leases are judged by. */
    notice?: RemovalNotice,
  ): Promise<StagedDataset | undefined> => {
    const pinned = pinnedOverOtherVersion(spec, published);
    if (!altered && !pinned && !refreshWaitsForJobs(spec, published)) return undefined;
    // Leases that cannot be read: taken to be in use. The bound's own errors (a stall, an
    // interrupt) fail the staging: taken as "none", an interrupt here let the swap go ahead
    // without a look at the leases (review, 2026-12-05).
    const users = await call(`reading the leases of ${target.location.path}`, () =>
      activeLeasesBeforeRemoval(target.location, notice?.storageNow()).catch((error: unknown) => [
        unreadableLeases(error),
      ]),
    );
    if (users.length === 0) return undefined;
    if (altered) throw new OtherVersionInUse(target.location.path, users, true, change);
    // A pinned version is what this job must get, and the one there is what those jobs
    // read: neither may be swapped for the other. Two jobs pinning two versions of one object
    // share its path (SPEC §2: no etag, no version in it); a second job swapped its version
    // in under the first, which then read the other version's bytes (review, 2026-12-05).
    if (pinned) throw new OtherVersionInUse(target.location.path, users);
    if (published === undefined) return undefined;
    await bestEffort(`marking ${target.location.path} used`, () => markUsed(target.location));
    context.signal?.throwIfAborted();
    context.onEvent({
      type: "warning",
      dataset: spec.name,
      message: `${spec.uri} changed since it was staged (${published.createdAt}), but ${target.location.path} is in use (${users.join(", ")}): kept as it is, not replaced under the jobs reading it; the first run once no job uses it refreshes it`,
    });
    // What an ordinary reuse says of the copy it gives (fetch --json lacked both for a kept
    // one, and the made-writable warning was not said).
    if (madeWritable === true) sayMadeWritable(published);
    return publishedAs(resolution, published, {
      keptInUse: users,
      ...(timesChanged === true ? { timesChanged: true as const } : {}),
      ...(madeWritable === true ? { madeWritable: true as const } : {}),
    });
  };

  /** The published dataset of another version of the source, as this run's result. */
  const publishedAs = (
    resolution: Resolution,
    published: Manifest,
    extra: Partial<StagedDataset>,
  ): StagedDataset => {
    context.onEvent({ type: "cached", dataset: spec.name, path: target.location.path });
    return withManifest(
      {
        ...summaryOf(resolution),
        // The kept version may be of another kind (a folder whose URI is now an object).
        kind: published.kind,
        etag: published.etag ?? null,
        versionId: published.versionId ?? null,
        bytes: published.bytes,
        // An archive is one object, whatever it expanded to (its manifest lists the files).
        objects: published.kind === "prefix" ? published.files.length : 1,
        cached: true,
        verification: {
          [published.verification]: published.kind === "prefix" ? published.files.length : 1,
        },
        seconds: elapsed(started),
        retries,
        refetchedBytes: 0,
        ...extra,
      },
      published,
    );
  };

  const fallBack = async (
    problem: string,
    reason = `shared storage is unavailable: ${problem}`,
  ): Promise<StagedDataset | undefined> => {
    if (settings.fallback === false) throw noFallbackError(spec, reason);
    target = fallbackTarget(spec, settings);
    fallback = reason;
    context.onEvent({
      type: "warning",
      dataset: spec.name,
      message: `${fallback}; staging into an ephemeral volume at ${target.location.path} instead`,
    });
    try {
      return await reuse(resolution);
    } catch (error) {
      throw error instanceof OtherVersionInUse
        ? otherVersionInUse(spec, error.path, error.users, {
            altered: error.altered,
            change: error.change,
          })
        : error;
    }
  };

  /**
   * A store that cannot be reached (TRANSIENT once the retries are spent) and a dataset pinned
   * by its ETag or its versionId (plan.ts pinsData) whose copy is staged: that copy, verified
   * when it was staged, with a warning. A store outage stopped every job whose data was
   * already here (exploratory review, 2026-12-07). Never for a dataset not pinned (the store
   * may have another version), nor pinned only to the versionId "null" (a null version is
   * overwritten in place), nor for any other error (403 and 404 are answers).
   */
  const stagedCopyOfPin = async (error: unknown): Promise<StagedDataset | undefined> => {
    if (!(error instanceof DsfetchError) || error.code !== "TRANSIENT") return undefined;
    if (!pinsData(spec)) return undefined;
    if (target.volume === "shared" && context.sharedStorageAnswers !== undefined) {
      let answers = false;
      await untilOrAborted(
        context.sharedStorageAnswers().then((found) => {
          answers = found;
        }),
        context.signal,
      );
      if (!answers) return undefined;
    }
    if (target.volume === "ephemeral" && settings.ephemeralRootIsDefault === true) {
      // As reuse() does, before anything is read there.
      const root = dirname(target.location.path);
      await call(`looking at ${root}`, () => ensureDefaultEphemeralRoot(root));
    }
    const staged = await call(`reading ${target.location.manifestPath}`, (_signal, progressed) =>
      inspectHere(progressed),
    );
    const manifest = staged.manifest;
    const copy = pinnedCopy(spec, manifest);
    if (copy === undefined || manifest === undefined) return undefined;
    let reused: StagedDataset | undefined;
    try {
      reused = await reuse(copy);
    } catch (reuseError) {
      throw reuseError instanceof OtherVersionInUse
        ? otherVersionInUse(spec, reuseError.path, reuseError.users, {
            altered: reuseError.altered,
            change: reuseError.change,
          })
        : reuseError;
    }
    // Said once it is so (reuse may find the copy changed meanwhile: then the store's error).
    if (reused !== undefined) {
      context.onEvent({
        type: "warning",
        dataset: spec.name,
        message: `the store cannot be reached (${error.message}): using the copy staged at ${target.location.path} (${manifest.createdAt}) of the pinned ${pinInWords(spec)}, verified then by ${manifest.verification}`,
      });
      // Said in --json too: an ordinary "cached" told a pipeline nothing of the outage
      // (exploratory review, 2026-12-07).
      const marked: StagedDataset = { ...reused, storeUnreachable: error.message };
      const published = manifestOfStaged(reused);
      return published === undefined ? marked : withManifest(marked, published);
    }
    return reused;
  };

  // After shared storage was found full: the version resolved then, not resolved again.
  let resolution: Resolution;
  /** When this worker first asked the store (publishedMeanwhile below). */
  const resolvingSince = Date.now();
  try {
    resolution = sharedFull?.resolution ?? (await resolve());
  } catch (error) {
    const copy = await stagedCopyOfPin(error);
    if (copy !== undefined) return copy;
    throw error;
  }
  if (sharedFull !== undefined) {
    const reused = await fallBack(sharedFull.reason);
    if (reused !== undefined) return reused;
  }
  let storageAnswers = true;
  if (target.volume === "shared" && context.sharedStorageAnswers !== undefined) {
    // An interrupt is answered while the probe waits (up to DSFETCH_STORAGE_TIMEOUT: as long
    // as a kubelet's grace period by default; found in review).
    const probe = context.sharedStorageAnswers();
    await untilOrAborted(
      probe.then((answers) => {
        storageAnswers = answers;
      }),
      context.signal,
    );
  }
  if (!storageAnswers) {
    // Not touched in this process at all: a call stuck in the kernel would keep it from
    // ever exiting (storage-probe.ts).
    const { storageRoot } = requireSharedStorage(settings);
    const seconds = context.tuning.storageTimeoutMs / 1000;
    const reused = await fallBack(
      `${storageRoot} did not answer within ${seconds} s (a network mount whose server is unreachable?; DSFETCH_STORAGE_TIMEOUT sets the bound)`,
    );
    if (reused !== undefined) return reused;
  }
  /**
   * Jobs that took their lease on the version at the path while this one downloaded (review:
   * it escaped as INTERNAL, and was passed on to the waiters as this download's failure).
   */
  const inUseSinceDownloading = (error: unknown): never => {
    if (!(error instanceof OtherVersionInUse)) throw error;
    throw otherVersionInUse(spec, error.path, error.users, {
      meanwhile: "downloaded",
      altered: error.altered,
      change: error.change,
    });
  };
  /**
   * reuse(), before this worker holds the lock: another version in use at the path sends a
   * pinned dataset to an ephemeral volume (its error on an ephemeral one).
   */
  const reuseBeforeLock = async (): Promise<StagedDataset | undefined> => {
    try {
      return await reuse(resolution);
    } catch (error) {
      if (!(error instanceof OtherVersionInUse)) throw error;
      if (target.volume !== "shared")
        throw otherVersionInUse(spec, error.path, error.users, {
          altered: error.altered,
          change: error.change,
        });
      return fallBack(
        error.message,
        otherVersionFallback(spec, error.path, error.users, error.altered, error.change),
      );
    }
  };
  /**
   * reuse() once this worker waited for the lock: another version published and used by jobs
   * meanwhile is PATH_TAKEN, as at the swap (it escaped as an internal error; a fallback here
   * skipped the ephemeral volume's checks: review, 2026-12-06).
   */
  const reuseAfterWait = () =>
    reuse(resolution).catch((error: unknown) => {
      if (!(error instanceof OtherVersionInUse)) throw error;
      throw otherVersionInUse(spec, error.path, error.users, {
        meanwhile: "waited",
        altered: error.altered,
        change: error.change,
      });
    });
  const fast = await reuseBeforeLock();
  if (fast !== undefined) {
    // A holder killed between its rename and its clean-up leaves its attempt directory behind.
    // Without the lock only this host's dead processes' attempts are certain to be abandoned
    // (another host's may be alive, and writing a large file leaves directory mtimes alone).
    await call(`removing abandoned attempts in ${target.location.tmpDir}`, (signal, progressed) =>
      cleanAbandonedAttempts(target.location, Number.POSITIVE_INFINITY, progressed, signal),
    ).catch(() => 0);
    context.signal?.throwIfAborted();
    return fast;
  }
  /** Why shared storage has no room for it now, if it has not (checked again under the lock). */
  const roomProblem = async (): Promise<StorageProblem | undefined> => {
    const { storageRoot } = requireSharedStorage(settings);
    const dataRoot = dirname(target.location.path);
    const problem = await call(`checking ${storageRoot}`, () =>
      sharedStorageProblem(storageRoot, dataRoot, resolution.bytes, {
        files: entriesToWrite(resolution),
      }),
    );
    if (problem !== undefined) return problem;
    const noRoom = await call(`reading ${target.location.failurePath}`, () =>
      noRoomNow(target.location.failurePath, resolution, dataRoot),
    );
    return noRoom === undefined ? undefined : { reason: noRoom, space: true };
  };
  if (target.volume === "shared" && seenBeforeDownload !== undefined) {
    // An older copy to replace that is a teammate's: said before the download, which the swap
    // would refuse (volumes/permissions.ts replaceRefusal).
    const refused = await call(`looking at ${target.location.path}`, () =>
      replaceRefusal(target.location.path, {
        ...(seenCopy === undefined ? {} : { copy: seenCopy }),
      }),
    );
    if (refused !== undefined) {
      const reused = await fallBack(refused, refused);
      if (reused !== undefined) return reused;
    }
  }
  /**
   * The lock's timing where this dataset is staged. On an ephemeral volume the stale bound is
   * at most EPHEMERAL_LOCK_STALE_MS: its root is on this host (no NFS attribute cache, no other
   * host's clock), and a container restarted in its pod (a new PID namespace, which cannot
   * look up the old holder's process) waited out the whole shared-storage bound, 2-3 minutes,
   * for a holder killed mid-download (review, 2026-12-07).
   */
  const lockTiming = () =>
    target.volume === "ephemeral"
      ? {
          ...context.tuning.lock,
          staleMs: Math.min(context.tuning.lock.staleMs, EPHEMERAL_LOCK_STALE_MS),
        }
      : context.tuning.lock;
  /** Too little room in shared storage was seen while another process held the lock. */
  let roomCheckUnderLock = false;
  if (target.volume === "shared") {
    const problem = await roomProblem();
    // A live holder of the lock may be writing this very dataset: the room its download
    // takes is no reason to fall back (found in review: a second worker staged its own
    // copy, or failed, while the first published). Waited for, then looked at again.
    const held =
      problem?.space === true &&
      (await call(`looking at the lock ${target.location.lockPath}`, () =>
        lockHeld(target.location.lockPath, context.tuning.lock.staleMs),
      ));
    if (held) roomCheckUnderLock = true;
    else if (problem !== undefined) {
      // Published since this worker looked, its holder gone: the room it took is why there is
      // none. Used, not downloaded again on an ephemeral volume (review, 2026-12-06: workers
      // started a little after the first fell back on storage that holds about one copy).
      const published = problem.space === true ? await reuseBeforeLock() : undefined;
      if (published !== undefined) return published;
      if (target.volume === "shared") {
        const reused = await fallBack(problem.reason);
        if (reused !== undefined) return reused;
      }
    }
  }
  checkSupported(spec, resolution, target, fallback);
  /** Another host's (or container's) attempt is abandoned once untouched this long. */
  const abandonedAfterMs = abandonedAfter(context.tuning.lock.staleMs);
  /**
   * NO_SPACE when an ephemeral volume's disk has too little free for the dataset now (the
   * volume's size is checked apart: checkSupported).
   */
  const ephemeralRoomProblem = async (): Promise<DsfetchError | undefined> => {
    const root = dirname(target.location.path);
    const found = await call(`checking the free space of ${root}`, () => statfsWhere(root));
    if (found === undefined) return undefined;
    const free = found.bavail * found.bsize;
    const inodes = inodeShortage(
      `${root} (its ephemeral volume)`,
      found,
      entriesToWrite(resolution),
    );
    if (resolution.bytes <= free && inodes === undefined) return undefined;
    const left = await call(`reading ${target.location.tmpDir}`, () =>
      readdir(target.location.tmpDir).catch(() => [] as string[]),
    );
    return new DsfetchError(
      "NO_SPACE",
      inodes !== undefined && resolution.bytes <= free
        ? `${spec.name}: ${inodes}`
        : `${spec.name}: needs ${formatBytes(resolution.bytes)} (${resolution.bytes} bytes) but ${root} (its ephemeral volume) has ${formatBytes(free)} free`,
      {
        dataset: spec.name,
        hint:
          left.length > 0
            ? `${target.location.tmpDir} holds ${left.length} partial download(s) of other runs (another container's, or one killed: removed once untouched for ${Math.round(abandonedAfterMs / 60_000)} min); remove them if no other job uses this volume, free space there, or point --ephemeral-root (DSFETCH_EPHEMERAL_ROOT) at a larger disk`
            : "free space there, or point --ephemeral-root (DSFETCH_EPHEMERAL_ROOT) at a larger disk",
      },
    );
  };
  if (target.volume === "ephemeral") {
    // A job killed mid-download (out of memory, evicted) left its partial download in the
    // volume, which outlives the container (emptyDir): only a lock holder cleaned up, and
    // ephemeral datasets took no lock then, so it stayed, and the job, restarted, failed
    // NO_SPACE below at every start (review, 2026-12-06). Removed before the room is looked
    // at, as a lock holder does: a dead process's of this host (and PID namespace) at once,
    // others once idle that long.
    await call(`removing abandoned attempts in ${target.location.tmpDir}`, (signal, progressed) =>
      cleanAbandonedAttempts(target.location, abandonedAfterMs, progressed, signal),
    );
    // The volume's size is a bound, not space: a root on a small disk filled up mid-download
    // and said "free space in shared storage" (review, 2026-12-05). A dataset that cannot fit
    // in what is free fails before its first byte, with both sizes: looked at under the lock
    // (below), once a holder's partial download, which takes the room, is this worker's to
    // wait for, or to remove when it took that holder's lock over.
  }

  // One downloader per dataset, on an ephemeral volume too: the processes of one host that
  // share its ephemeral root (the ranks of a node, or every worker once shared storage was
  // found full) each downloaded the same dataset into it (exploratory tester, 2026-12-07:
  // 8 workers, 8 downloads). SPEC §6's "no cross-worker lock" is read as none across hosts:
  // this one is in the ephemeral root. The others wait, then reuse its result.
  let lock: HeldLock | undefined;
  /** The holders this worker waited on (failure-record.ts). */
  const waitedOn: Holder[] = [];
  /** When this worker first waited on a holder it could not name (failure-record.ts). */
  let unidentifiedSince: number | undefined;
  /**
   * Shared storage found full before the attempt's writes (no inode left for the lock or the
   * attempt's directories, bytes still free): the same fallback as while writing.
   */
  const fullToFallback = (error: unknown): never => {
    if (target.volume === "shared" && error instanceof DsfetchError && isStorageFull(error)) {
      throw new SharedStorageFull(
        storageFullReason(target, error),
        resolution,
        error,
        (context.sharedWrites?.writers() ?? 0) > 0,
      );
    }
    throw error;
  };
  // "Done" (published while this worker waited) is followed by a reuse; when that finds it
  // gone again (a prune, a refresh between the two looks), the lock is taken as usual, the
  // look for "done" off: every waiter went on to download without the lock (review,
  // 2026-12-06: up to one download per waiter).
  /**
   * The copy at the path before this worker waited for the lock (reuse's last look, after
   * any fallback: an ephemeral target's own copy is never compared with a shared one's).
   */
  const seenBeforeWaiting = seenBeforeDownload;
  for (let lookForDone = true; lock === undefined; ) {
    const outcome = await acquireLock(target.location.lockPath, spec.name, {
      timing: lockTiming(),
      signal: context.signal,
      call,
      isDone: lookForDone
        ? async (_signal, progressed) => isCached(resolution, await inspectHere(progressed), spec)
        : undefined,
      onWait: (report) => {
        const { holder } = report;
        const known = (seen: Holder) =>
          seen.host === holder?.host && seen.pid === holder.pid && seen.since === holder.since;
        if (holder !== undefined && !waitedOn.some(known)) {
          waitedOn.push(holder);
        }
        if (holder === undefined) unidentifiedSince ??= Date.now();
        context.onEvent({
          type: "waiting",
          dataset: spec.name,
          holder: describeHolder(holder),
          waitedMs: report.waitedMs,
          heartbeatAgeMs: report.heartbeatAgeMs,
        });
      },
      onCompromised: (error) =>
        context.onEvent({
          type: "warning",
          dataset: spec.name,
          message: `lost the download lock (${error.message}); continuing: publishing stays atomic`,
        }),
    }).catch(fullToFallback);
    if (outcome.kind === "acquired") lock = outcome.lock;
    else {
      const reused = await reuseAfterWait();
      if (reused !== undefined) return reused;
      lookForDone = false;
    }
  }
  /** Set when the cleanup is bounded (a stall, an interrupt): when it must be over. */
  let cleanupDeadline: number | undefined;
  /**
   * The attempt of a folder that changed while it was fetched (OBJECT_CHANGED), left in place
   * for the next attempt to take its verified, unchanged objects from (kept-objects.ts);
   * removed once that one has, and at the latest when this staging ends (the finally below).
   */
  let previous: PreviousAttempt | undefined;
  const dropPrevious = async (progressed?: () => void, signal?: AbortSignal): Promise<void> => {
    const earlier = previous;
    if (earlier === undefined) return;
    previous = undefined;
    earlier.stopHeartbeat();
    await discardAttempt(earlier.attempt, progressed, signal);
  };
  /**
   * A folder's record of verified objects for a new attempt: after a restart, holding the
   * objects of the previous attempt that the new listing gives unchanged, moved into this
   * attempt's directory before anything is fetched (kept-objects.ts).
   */
  const keepFromPrevious = async (
    listing: ResolvedPrefix,
    attempt: Attempt,
    progress: ProgressTracker,
  ): Promise<VerifiedObjects> => {
    const earlier = previous;
    if (earlier === undefined) return new VerifiedObjects(listing.objects.length);
    const kept = keptFor(earlier.resolution, earlier.verified, listing);
    if (kept.count > 0) {
      // Keys the new listing cannot store fail before a file is moved, as before a download.
      checkPrefixKeys(listing, spec.name);
      await call(`moving the objects kept from ${earlier.attempt.dir}`, (signal, progressed) =>
        moveKept({
          resolution: listing,
          kept,
          from: earlier.attempt.dataDir,
          destination: attempt.dataDir,
          signal,
          writes: context.tuning.fileWrites,
          onKept: (bytes) => {
            progressed();
            progress.addKept(bytes);
            progress.addObject();
          },
        }),
      );
    }
    if (kept.count > 0) {
      context.onEvent({ type: "info", dataset: spec.name, message: keptMessage(kept, listing) });
    }
    return kept;
  };
  try {
    for (let restart = 0; ; restart++) {
      // Re-check under the lock: the previous holder may have published while we waited.
      const reused = await reuseAfterWait();
      if (reused !== undefined) return reused;
      const seen = seenBeforeDownload;
      const waited = waitedOn.length > 0 || unidentifiedSince !== undefined;
      if (
        restart === 0 &&
        lock !== undefined &&
        !pinsData(spec) &&
        seen !== undefined &&
        ((waited && manifestIdentity(seen) !== manifestIdentity(seenBeforeWaiting)) ||
          (sameSource(seen.uri, spec.uri) &&
            Date.parse(seen.createdAt) >= resolvingSince - PUBLISHED_MEANWHILE_SLACK_MS))
      ) {
        // Published while this worker waited (or listed), and not the version it resolved:
        // the source changed while the holder downloaded (which started again on the new
        // one). The store is asked again (a HEAD, a listing) rather than downloading from
        // what it no longer has: each waiter downloaded the folder in turn up to the changed
        // object, then listed again and found it published (tester, 2026-12-07: 8 workers, a
        // folder of 400 objects changed once, 3,328 object GETs, each worker "cached").
        context.onEvent({
          type: "info",
          dataset: spec.name,
          // "just before or while": a copy published within the slack before this worker began
          // is taken for one too (it said "while" of a copy older than the process: tester).
          message: `${target.location.path} was published at ${seen.createdAt}, just before or while this worker ${waited ? "waited" : "asked the store"}, from another version of ${spec.uri} than it found: asking the store again`,
        });
        resolution = await resolve();
        checkSupported(spec, resolution, target, fallback);
        const fresh = await reuseAfterWait();
        if (fresh !== undefined) return fresh;
      }
      if (lock !== undefined) {
        // Or failed on bytes that would fail here too (a broken archive): not again.
        const { failurePath } = target.location;
        const failed = await call(`reading ${failurePath}`, () =>
          failureOfAwaitedHolder(failurePath, resolution, spec.name, waitedOn, {
            unidentifiedSince,
          }),
        );
        if (failed !== undefined) {
          // Passed on: the workers that waited on this one are spared too.
          const { holder } = lock;
          await call(`writing ${failurePath}`, () => passOnFailure(failurePath, holder));
          if (target.volume === "shared" && isStorageFull(failed)) {
            throw new SharedStorageFull(
              storageFullReason(target, failed),
              resolution,
              failed,
              false,
            );
          }
          throw failed;
        }
      }
      if (lock !== undefined) {
        // On an ephemeral volume, the partial downloads of the holders this worker took the
        // lock over from go at once (volumes/cleanup.ts TakenOver says why).
        const takenOver = target.volume === "ephemeral" ? waitedOn : [];
        await call(
          `removing abandoned attempts in ${target.location.tmpDir}`,
          (signal, progressed) =>
            cleanAbandonedAttempts(
              target.location,
              abandonedAfterMs,
              progressed,
              signal,
              false,
              takenOver,
            ),
        );
      }
      if (target.volume === "ephemeral" && previous === undefined) {
        // The room is looked at here, under the lock, only: a holder that died or paused
        // mid-download may have left its partial download (another container's, kept while
        // it may be alive), and the download went ahead into a volume without room for it,
        // failing NO_SPACE after it had fetched most of it (exploratory tester, 2026-12-07).
        const problem = await ephemeralRoomProblem();
        if (problem !== undefined) throw problem;
      }
      if (roomCheckUnderLock) {
        roomCheckUnderLock = false;
        const problem = await roomProblem();
        if (problem !== undefined) {
          throw new SharedStorageFull(
            problem.reason,
            resolution,
            new DsfetchError("NO_SPACE", `${spec.name}: ${problem.reason}`, { dataset: spec.name }),
            false,
          );
        }
      }
      const attempt = await call(`creating a directory in ${target.location.tmpDir}`, () =>
        createAttempt(target.location),
      ).catch(fullToFallback);
      const stopHeartbeat = keepAttemptFresh(attempt.dir);
      /** Another result instead of this download's (published meanwhile, or kept in use). */
      const dropAttemptFor = async (result: StagedDataset): Promise<StagedDataset> => {
        stopHeartbeat();
        await call(`removing ${attempt.dir}`, (signal, progressed) =>
          discardAttempt(attempt, progressed, signal),
        ).catch(() => {});
        return result;
      };
      const endWrite = target.volume === "shared" ? context.sharedWrites?.begin() : undefined;
      /** A folder's objects written and verified in this attempt (kept-objects.ts). */
      let verified: VerifiedObjects | undefined;
      try {
        const progress = new ProgressTracker(
          spec.name,
          resolution.bytes,
          objectCount(resolution),
          context.onEvent,
        );
        if (resolution.kind === "prefix") {
          verified = await keepFromPrevious(resolution, attempt, progress);
        }
        if (previous !== undefined) {
          const { dir } = previous.attempt;
          await call(`removing ${dir}`, (signal, progressed) =>
            dropPrevious(progressed, signal),
          ).catch((stalled: unknown) =>
            context.onEvent({
              type: "warning",
              dataset: spec.name,
              message: `${stalled instanceof Error ? stalled.message : String(stalled)}; a later run removes it`,
            }),
          );
        }
        // For streamed archives and folders (many files through the page cache). One object
        // (a zip too) has none: it is written with direct I/O, or its own writer starts the
        // write-back of its file (download-object.ts, fdatasync every 256 MiB).
        const streamed = spec.archive !== undefined && spec.archive !== "zip";
        const writeback = new EarlyWriteback(attempt.dir, {
          expectedBytes: streamed || resolution.kind === "prefix" ? resolution.bytes : 0,
        });
        let download: Download;
        try {
          download = await downloadInto(
            attempt,
            spec,
            resolution,
            client,
            retry,
            progress,
            writeback,
            context,
            target.volumeBytes,
            call,
            verified,
          );
        } catch (error) {
          writeback.stop();
          throw error;
        }
        progress.finish();
        // Its own bound too (early-writeback.ts): the sync in flight may be a large one.
        await call(`syncing ${attempt.dir}`, () => writeback.settle(), {
          atLeastMs: SETTLE_LIMIT_MS + 5_000,
        });
        const manifest = buildManifest(spec, resolution, download);
        let keptAtSwap: StagedDataset | undefined;
        let supersededAtSwap: StagedDataset | undefined;
        /** The copy the swap replaces (fetch --json's `replaced`, as plan's `replaces`). */
        let replacedCopy: ReplacedCopy | undefined;
        /** The version the store was asked about (publishedMeanwhile) and ours won over. */
        let askedAbout: string | undefined;
        /**
         * A manifest there now that was not there before this download: published meanwhile
         * (a lock lost). Without this, a lock merely found lost (slow refreshes on NFS, a
         * holder file that could not be written, a taker that died) swapped nothing in and
         * threw a newer download away for the version it was refreshing (review).
         */
        const publishedSince = (there: Manifest | undefined): there is Manifest =>
          there !== undefined &&
          manifestIdentity(there) !== manifestIdentity(seenBeforeDownload) &&
          manifestIdentity(there) !== askedAbout;
        /**
         * This worker lost its lock (frozen or stopped past DSFETCH_LOCK_STALE) and the
         * worker that took it over published `published`, another version of the source.
         * Which is newer cannot be told from the two (that worker may have resolved before
         * this one, or after; their clocks may differ): the store says. Ours replaces it only
         * if ours is what the store has now; otherwise that one stays (the source moved on
         * again, or the store did not answer: the next run refreshes it), and this run uses
         * it. Before, the late publisher swapped its older version back over the newer one:
         * the jobs after it read stale data, and the next run downloaded it all again.
         */
        const publishedMeanwhile = async (
          published: Manifest,
        ): Promise<StagedDataset | undefined> => {
          const current = await resolveDataset(spec, client, retry).catch(() => undefined);
          if (current !== undefined && isCached(current, { exists: true, manifest }, spec)) {
            // Asked once about that one: the swap may ask again (a notice gone stale).
            askedAbout = manifestIdentity(published);
            return undefined;
          }
          const now =
            current === undefined
              ? "the store could not be asked which is current"
              : isCached(current, { exists: true, manifest: published }, spec)
                ? "the store has that version now"
                : "the store has yet another version now: the next run refreshes it";
          context.onEvent({
            type: "warning",
            dataset: spec.name,
            message: `this worker's lock was taken over during its download, and another worker published another version of ${spec.uri} at ${target.location.path} meanwhile (${published.createdAt}); ${now}: using that one, not replacing it with this download`,
          });
          await bestEffort(`marking ${target.location.path} used`, () => markUsed(target.location));
          context.signal?.throwIfAborted();
          return publishedAs(resolution, published, { lockTakenOver: true });
        };
        // Leased while this download ran: not replaced under that job either. Read here
        // (no sync, no publish for nothing) and again just before the swap (publish.ts).
        const published = await call(
          `reading ${target.location.manifestPath}`,
          (_signal, progressed) => inspectHere(progressed),
        );
        // Another version published meanwhile by the worker that took this one's lock over:
        // asked about here, before the swap's removal notice is up (jobs wait on it; a
        // folder's listing may take minutes), and again at the swap only if yet another one
        // was published since.
        if (
          lock !== undefined &&
          publishedSince(published.manifest) &&
          published.altered !== true &&
          !isCached(resolution, published, spec) &&
          !(await call(`reading ${target.location.lockPath}`, () => lock.stillHeld()))
        ) {
          const theirs = await publishedMeanwhile(published.manifest);
          if (theirs !== undefined) return dropAttemptFor(theirs);
        }
        const kept = isCached(resolution, published, spec)
          ? undefined
          : await keptInUse(resolution, published).catch(inUseSinceDownloading);
        if (kept !== undefined) return dropAttemptFor(kept);
        let notice: RemovalNotice | undefined;
        // Left up (storage that stopped answering), it is over within a minute.
        const takeDown = (posted: RemovalNotice) =>
          call(
            `taking down the removal notice of ${target.location.path}`,
            () => posted.withdraw(),
            { uninterruptible: true },
          ).catch(() => posted.abandon());
        const outcome = await publish(attempt, target.location, manifest, call, {
          inspect: inspectHere,
          beforeReplacing: async () => {
            // Up before the leases are read: a job leasing it after that read waits for the
            // swap, then looks at the version again (volumes/removal-notice.ts). Jobs lease
            // ephemeral datasets too (stage.ts). Asked again (publish.ts replacingHonoured):
            // a notice not kept fresh is replaced by a new one before the leases are read
            // again.
            const stale = notice;
            if (stale !== undefined && !stale.honoured()) {
              notice = undefined;
              await takeDown(stale);
            }
            notice ??= await postRemovalNoticeWithin(call, target.location);
            const there = await call(
              `reading ${target.location.manifestPath}`,
              (_signal, progressed) => inspectHere(progressed),
            );
            // Our data already (another worker's, a lock lost): left in place, jobs may read it.
            if (isCached(resolution, there, spec)) return false;
            // Another version, published by a worker that took our lock over: not swapped
            // back for ours unless ours is what the store has now.
            if (
              lock !== undefined &&
              publishedSince(there.manifest) &&
              there.altered !== true &&
              !(await call(`reading ${target.location.lockPath}`, () => lock.stillHeld()))
            ) {
              supersededAtSwap = await publishedMeanwhile(there.manifest);
              if (supersededAtSwap !== undefined) return false;
            }
            keptAtSwap = await keptInUse(resolution, there, notice).catch(inUseSinceDownloading);
            if (keptAtSwap !== undefined) return false;
            replacedCopy =
              there.manifest === undefined ? undefined : replacedCopyOf(there.manifest, there);
            return true;
          },
          afterReplacing: async ({ mayStillLand }) => {
            const posted = notice;
            if (posted === undefined) return;
            // A rename given up on may still land: left up (it goes stale within a minute).
            if (mayStillLand) return posted.abandon();
            await takeDown(posted);
          },
          replacingHonoured: () => notice?.honoured() ?? true,
        }).catch((error: unknown) => {
          if (!(error instanceof SupersededWhilePublishing)) throw error;
          return error;
        });
        if (outcome instanceof SupersededWhilePublishing) {
          // Another worker (that took this one's lock over) swapped its tree in between ours
          // and our manifest: a pause at that moment. Its copy is complete and verified: an
          // unpinned dataset uses it, with a warning, as when it was published before our swap
          // (publishedMeanwhile); a pinned one is not given another version.
          const theirs = outcome.theirs;
          // The same store too: a URI of another endpoint is another dataset (review).
          if (theirs === undefined || pinsData(spec) || !sameSourceAt(theirs, sourceOf(spec))) {
            // Said as what happened, not as a write that failed ("cannot write to
            // …/manifests/…": second review, 2026-12-07).
            throw new DsfetchError("STORAGE", `${spec.name}: ${outcome.message}`, {
              dataset: spec.name,
              hint:
                theirs === undefined
                  ? "nothing of this run's download was kept: run again"
                  : `nothing of this run's download was kept${pinsData(spec) ? ` (the one there is not the pinned ${pinInWords(spec)})` : ""}: run again (this worker was paused for longer than DSFETCH_LOCK_STALE, a VM pause or SIGSTOP, and its lock was taken over)`,
            });
          }
          context.onEvent({
            type: "warning",
            dataset: spec.name,
            message: `this worker's lock was taken over, and another worker published another version of ${spec.uri} at ${target.location.path} (${theirs.createdAt}) while this one published its own: using that one`,
          });
          await bestEffort(`marking ${target.location.path} used`, () => markUsed(target.location));
          context.signal?.throwIfAborted();
          return dropAttemptFor(publishedAs(resolution, theirs, { lockTakenOver: true }));
        }
        if (outcome === "kept" && keptAtSwap !== undefined) return keptAtSwap;
        if (outcome === "kept" && supersededAtSwap !== undefined) return supersededAtSwap;
        if (lock !== undefined) {
          const { failurePath } = target.location;
          await bestEffort(`removing ${failurePath}`, () => clearFailure(failurePath));
        }
        await bestEffort(`marking ${target.location.path} used`, () => markUsed(target.location));
        if (target.volume === "shared") {
          await bestEffort(`making the bookkeeping directories of ${target.location.path}`, () =>
            makeBookkeepingDirs(target.location),
          );
        }
        // An interrupt answered by the last calls above is an interrupt, never a success.
        context.signal?.throwIfAborted();
        // SPEC §4: what could not be verified is said, not hidden (it was in --json and the
        // manifest only: review, 2026-12-05).
        for (const [method, count] of Object.entries(download.verification)) {
          if (!method.startsWith("size-only")) continue;
          context.onEvent({
            type: "warning",
            dataset: spec.name,
            message: `${count === 1 ? "1 object" : `${count} objects`} of ${spec.uri} verified by ${method}: their sizes matched, their bytes were not checked`,
          });
        }
        const seconds = elapsed(started);
        context.onEvent({
          type: "staged",
          dataset: spec.name,
          path: target.location.path,
          bytes: resolution.bytes,
          seconds,
        });
        return withManifest(
          {
            ...summaryOf(resolution),
            cached: false,
            verification: download.verification,
            seconds,
            retries,
            refetchedBytes: download.refetchedBytes,
            ...(outcome === "replaced" && replacedCopy !== undefined
              ? { replaced: replacedCopy }
              : {}),
            // The same data, published meanwhile by the worker that took this one's lock over:
            // its copy stands, this download went (exploratory tester, 2026-12-07: said as a
            // plain download).
            ...(outcome === "already-published" ? { lockTakenOver: true as const } : {}),
          },
          manifest,
        );
      } catch (thrown) {
        // A system error that reached here unwrapped (a file opened for writing with no inode
        // left: found in review, INTERNAL "a bug in dsfetch") is the storage's, and a full one
        // falls back below.
        const system = systemErrorIn(thrown);
        const error = system === undefined ? thrown : storageError(system, attempt.dir);
        // A full disk is remembered with what this dataset had written when it met it (it
        // needs more than that: noRoomNow), before the attempt goes. Not the free space when
        // it began: other processes' writes counted as its own (review).
        const written =
          lock !== undefined && error instanceof DsfetchError && isStorageFull(error)
            ? await call(`measuring ${attempt.dataDir}`, () => bytesUnder(attempt.dataDir)).catch(
                () => undefined,
              )
            : undefined;
        // Before the attempt is removed: a beat's entry made during the removal would fail it.
        stopHeartbeat();
        const pending = storage.pending();
        if (pending.length > 0 || isStall(error) || context.signal?.aborted === true) {
          cleanupDeadline = performance.now() + BOUNDED_CLEANUP_MS;
        }
        // A folder that changed while it was fetched is staged again from a new listing below:
        // this attempt stays, for the next to keep what it verified of objects unchanged in
        // the new listing (kept-objects.ts; every object was fetched again: 1 TB for one small
        // file rewritten). Removed by the next attempt, or when this staging ends otherwise.
        const keepForRestart =
          verified !== undefined &&
          verified.count > 0 &&
          resolution.kind === "prefix" &&
          previous === undefined &&
          error instanceof DsfetchError &&
          error.code === "OBJECT_CHANGED" &&
          restart < MAX_VERSION_RESTARTS &&
          spec.etag === undefined &&
          spec.versionId === undefined;
        if (pending.length > 0) {
          // A call given up on may still run when the storage answers (a rename of this very
          // tree into place): removing the attempt now could race it. A later run removes it.
          context.onEvent({
            type: "warning",
            dataset: spec.name,
            message: `left ${attempt.dir} in place: ${pending.join("; ")} has had no answer yet (the storage may be hung); a later run removes it`,
          });
        } else if (isStall(error) || context.signal?.aborted === true) {
          // After a stall the storage may be hung, and an interrupt is often the answer to a
          // hang: the cleanup there must not hold the error back. What is left is removed by
          // a later run.
          const discarding = discardAttempt(attempt);
          if (!(await settleWithin(discarding, BOUNDED_CLEANUP_MS))) {
            noteStuckThread(`removing ${attempt.dir}`, discarding);
            context.onEvent({
              type: "warning",
              dataset: spec.name,
              message: `removing ${attempt.dir} did not finish within ${BOUNDED_CLEANUP_MS / 1000} s (the storage may be hung); a later run removes it`,
            });
          }
        } else if (keepForRestart && verified !== undefined && resolution.kind === "prefix") {
          // Kept fresh meanwhile: another host's clean-up (a worker that took a lost lock over)
          // must not take it for abandoned while the next attempt moves its objects out.
          previous = {
            attempt,
            resolution,
            verified,
            stopHeartbeat: keepAttemptFresh(attempt.dir),
          };
        } else {
          // Under the clock too (each entry removed is progress): storage that hangs now would
          // otherwise hold this error back for good.
          await call(`removing ${attempt.dir}`, (signal, progressed) =>
            discardAttempt(attempt, progressed, signal),
          ).catch((stalled: unknown) =>
            context.onEvent({
              type: "warning",
              dataset: spec.name,
              message: `${stalled instanceof Error ? stalled.message : String(stalled)}; a later run removes it`,
            }),
          );
        }
        // This worker lost its lock (stopped or frozen past DSFETCH_LOCK_STALE) and the one
        // that took over published the dataset, removing this worker's attempt as abandoned:
        // the writes here then failed (ENOENT), and the job failed with STORAGE although the
        // dataset it needed was there (review, 2026-12-05). What is published for this very
        // version is verified: used. Not only once the lock is known lost: the failure may
        // come before the lock's next refresh finds it taken.
        if (lock !== undefined && !isStall(error) && context.signal?.aborted !== true) {
          const reused = await reuse(resolution).catch(() => undefined);
          if (reused !== undefined) {
            context.onEvent({
              type: "warning",
              dataset: spec.name,
              message: `this worker's download failed (${error instanceof Error ? error.message : String(error)}), but another worker published ${target.location.path} meanwhile (this one's lock was taken over): using it`,
            });
            return reused;
          }
        }
        if (lock !== undefined && pending.length === 0) {
          const { failurePath } = target.location;
          const { holder } = lock;
          // Best effort (failure-record.ts): its own stall must not replace this error.
          await bestEffort(`writing ${failurePath}`, () =>
            recordFailure(failurePath, resolution, error, holder, { neededMoreThan: written }),
          );
        }
        if (target.volume === "shared" && error instanceof DsfetchError && isStorageFull(error)) {
          throw new SharedStorageFull(
            storageFullReason(target, error),
            resolution,
            error,
            (context.sharedWrites?.writers() ?? 0) > 1,
          );
        }
        const replaced = error instanceof DsfetchError && error.code === "OBJECT_CHANGED";
        if (!replaced || restart >= MAX_VERSION_RESTARTS) throw error;
        if (spec.etag !== undefined || spec.versionId !== undefined) {
          throw new DsfetchError(
            "OBJECT_CHANGED",
            `${spec.name}: ${spec.uri} was overwritten during the download, and the datasets array pins ${spec.etag === undefined ? `version ${spec.versionId}` : `ETag ${spec.etag}`}`,
            {
              dataset: spec.name,
              hint: "nothing was published; check the object and update the datasets array",
              cause: error,
            },
          );
        }
        context.onEvent({
          type: "warning",
          dataset: spec.name,
          // A folder's object may have been deleted, not overwritten: what changed is said
          // (found with the folder-restart issue: a deletion was said to be an overwrite).
          message:
            resolution.kind === "prefix"
              ? `${spec.uri} changed during the download (${error.message.replace(`${spec.name}: `, "")}); starting again on the new version`
              : `${spec.uri} was overwritten during the download; starting again on the new version`,
        });
        resolution = await resolve();
        checkSupported(spec, resolution, target, fallback);
      } finally {
        stopHeartbeat();
        endWrite?.();
      }
    }
  } finally {
    const earlier = previous;
    if (earlier !== undefined) {
      // Not restarted after all (another worker's result used, a new listing that failed):
      // bounded as the attempt's own clean-up is, within what is left of its bound.
      if (
        cleanupDeadline === undefined &&
        (storage.pending().length > 0 || context.signal?.aborted === true)
      ) {
        cleanupDeadline = performance.now() + BOUNDED_CLEANUP_MS;
      }
      if (cleanupDeadline === undefined) {
        await call(`removing ${earlier.attempt.dir}`, (signal, progressed) =>
          dropPrevious(progressed, signal),
        ).catch((stalled: unknown) =>
          context.onEvent({
            type: "warning",
            dataset: spec.name,
            message: `${stalled instanceof Error ? stalled.message : String(stalled)}; a later run removes it`,
          }),
        );
      } else {
        const dropping = dropPrevious();
        if (!(await settleWithin(dropping, Math.max(0, cleanupDeadline - performance.now())))) {
          noteStuckThread(`removing ${earlier.attempt.dir}`, dropping);
          context.onEvent({
            type: "warning",
            dataset: spec.name,
            message: `removing ${earlier.attempt.dir} did not finish within ${BOUNDED_CLEANUP_MS / 1000} s (the storage may be hung); a later run removes it`,
          });
        }
      }
    }
    if (lock !== undefined) {
      // After a stall or an interrupt, what is left of the clean-up's bound (see above);
      // otherwise the stall bound, as every call on the storage.
      // A call still unanswered means hung storage: the clean-up's bound then too.
      if (cleanupDeadline === undefined && storage.pending().length > 0) {
        cleanupDeadline = performance.now() + BOUNDED_CLEANUP_MS;
      }
      const bound =
        cleanupDeadline === undefined
          ? context.tuning.extractStallTimeoutMs
          : Math.max(0, cleanupDeadline - performance.now());
      const releasing = lock.release();
      if (!(await settleWithin(releasing, bound))) {
        noteStuckThread(`releasing the lock ${target.location.lockPath}`, releasing);
        context.onEvent({
          type: "warning",
          dataset: spec.name,
          message: `releasing the lock ${target.location.lockPath} did not finish within ${(cleanupDeadline === undefined ? bound : BOUNDED_CLEANUP_MS) / 1000} s (the storage may be hung); it is released when the storage answers, or taken over after DSFETCH_LOCK_STALE`,
        });
      }
    }
  }
}

/** A folder's failed attempt, kept for the next one (kept-objects.ts). */
interface PreviousAttempt {
  readonly attempt: Attempt;
  /** The listing it fetched. */
  readonly resolution: ResolvedPrefix;
  /** Its objects written and verified. */
  readonly verified: VerifiedObjects;
  /** Its heartbeat (keepAttemptFresh), running while it is kept. */
  readonly stopHeartbeat: () => void;
}

/**
 * A copy of another version published this long before this worker first asked the store, or
 * later, counts as published meanwhile (a listing of a large folder takes seconds, and the
 * publisher's clock may be another machine's): asked again before downloading. Older copies
 * are ordinary refreshes, which the store was just asked about.
 */
const PUBLISHED_MEANWHILE_SLACK_MS = 60_000;

/** What tells two publishes of a dataset apart: when, and which version of the source. */
function manifestIdentity(manifest: Manifest | undefined): string | undefined {
  if (manifest === undefined) return undefined;
  return JSON.stringify([
    manifest.createdAt,
    manifest.etag ?? null,
    manifest.versionId ?? null,
    manifest.kind === "prefix" ? manifest.listingDigest : null,
  ]);
}

/** The stale bound of a lock in an ephemeral root, at most (lockTiming in stageDataset). */
const EPHEMERAL_LOCK_STALE_MS = 20_000;

/** Why a dataset goes to an ephemeral volume after shared storage was found full. */
function storageFullReason(target: Target, error: DsfetchError): string {
  const firstLine = error.message.split("\n")[0] ?? "";
  const what = firstLine.startsWith("no inodes left") ? "inodes" : "space";
  return `${dirname(target.location.path)} ran out of ${what} while the dataset was written there (${firstLine})`;
}

/**
 * How long the cleanup after a stall or an interrupt (removing the attempt, then releasing
 * the lock, together) may take before the dataset's error is given anyway.
 */
const BOUNDED_CLEANUP_MS = 5_000;

/** Filesystem errors (not the network's: those are classified where they happen). */
const FILESYSTEM_CODES: ReadonlySet<string> = new Set([
  "ENOSPC",
  "EDQUOT",
  "EIO",
  "EROFS",
  "EACCES",
  "EPERM",
  "EFBIG",
  "ESTALE",
  "EMFILE",
  "ENFILE",
  "ENOENT",
  "ENOTDIR",
  "EISDIR",
  "ENAMETOOLONG",
]);

/**
 * A filesystem error that reached the staging unwrapped, or wrapped only as INTERNAL (an
 * extraction thread's, carried over as its cause: archive/thread-errors.ts).
 */
function systemErrorIn(thrown: unknown): NodeJS.ErrnoException | undefined {
  const error =
    thrown instanceof DsfetchError && thrown.code === "INTERNAL" ? thrown.cause : thrown;
  if (error instanceof DsfetchError || !(error instanceof Error)) return undefined;
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && FILESYSTEM_CODES.has(code) ? error : undefined;
}

function isStall(error: unknown): boolean {
  return error instanceof DsfetchError && error.code === "STALLED";
}

interface Download {
  files: WrittenFiles;
  verification: Record<string, number>;
  refetchedBytes: number;
}

async function downloadInto(
  attempt: Attempt,
  spec: DatasetSpec,
  resolution: Resolution,
  client: StoreClient,
  retry: RetryOptions,
  progress: ProgressTracker,
  writeback: EarlyWriteback,
  context: StageContext,
  volumeBytes: number | undefined,
  /** The stall bound of the staging's calls on storage outside a download's clock. */
  call: StorageCall,
  /** A folder's record of verified objects, with those kept from a previous attempt. */
  verified: VerifiedObjects | undefined,
): Promise<Download> {
  const { signal, tuning } = context;
  // Bytes count towards the early write-back too (it ignores them where it was not wanted).
  const onBytes = (bytes: number): void => {
    progress.addBytes(bytes);
    writeback.wrote(bytes);
  };
  const errorContext: S3ErrorContext = {
    dataset: spec.name,
    uri: spec.uri,
    bucket: spec.location.bucket,
    versionId: spec.versionId,
    endpoint: client.endpointLabel,
    anonymous: client.anonymous,
    action: "reading",
    retries: context.tuning.retries,
  };
  if (resolution.kind === "prefix") {
    // Under a clock, as a single object below: once creates are slow (network storage) the
    // files are written through the thread pool, and when the storage stops answering those
    // writes wait in the kernel, every object behind them. Measured on a frozen FUSE mount:
    // silent, and SIGTERM answered only once it thawed. (Written one at a time, they block
    // this thread itself: cli/main-thread-watchdog.ts is the answer to that.)
    const result = await watchProgress(
      (watchedSignal, progressed) =>
        downloadPrefix({
          client,
          resolution,
          destination: attempt.dataDir,
          concurrency: tuning.objectConcurrency,
          rangeSize: tuning.rangeSize,
          signal: watchedSignal,
          retry: {
            ...retry,
            onRetry: (error, attempt, delayMs) => {
              progressed(0);
              retry.onRetry?.(error, attempt, delayMs);
            },
          },
          onBytes: (bytes) => {
            progressed(bytes);
            onBytes(bytes);
          },
          onObject: () => {
            // An empty object is progress too.
            progressed(0);
            progress.addObject();
          },
          onProgress: () => progressed(0),
          errorContext,
          writes: tuning.fileWrites,
          verified,
        }),
      {
        signal,
        stallMs: tuning.extractStallTimeoutMs,
        graceMs: stopGraceMs(tuning.extractStallTimeoutMs),
        dataset: spec.name,
        writing: attempt.dataDir,
        // The clock never stops on a byte count: after a folder's last byte come writes of
        // empty objects, and large objects' hashing, syncing and closing, any of which may
        // be where the storage hangs (and a folder of empty objects has no bytes at all).
        // The hashing reports its progress (onProgress): it trails the download by as much
        // as the hash is slower than the link (found in review: without, a folder of large
        // shards failed with STALLED in that tail).
        bytes: Number.POSITIVE_INFINITY,
      },
    );
    reportParallelWrites(context, spec.name, result.writtenInParallel, result.files.length);
    return {
      // A view of the listing (kept-objects.ts ListingFiles), not an array of entries: a copy
      // held an object per file again (memory review of folders, 2026-12-06).
      files: result.files,
      verification: { ...result.verification },
      refetchedBytes: result.refetchedBytes,
    };
  }
  const source = { ...resolution };
  const partCount = partsToLearn(resolution);
  const parts =
    partCount === undefined
      ? undefined
      : await learnParts(client.getter, source, partCount, retry, errorContext);
  if (spec.archive !== undefined) {
    // Loaded on demand: plain datasets never pay for the archive code.
    const { expandArchive } = await import("./expand.ts");
    const expanded = await expandArchive({
      spec,
      resolution,
      parts,
      client,
      attempt,
      tuning,
      // An ephemeral volume bounds what may be written; shared storage has a configurable bound.
      limits: {
        ...DEFAULT_LIMITS,
        maxBytes: volumeBytes ?? tuning.maxExpandedBytes,
        maxBytesFrom: volumeBytes === undefined ? "setting" : "volume",
      },
      retry,
      signal,
      onBytes,
      onRestart: () => progress.reset(),
      errorContext,
      call,
    });
    progress.addObject();
    reportParallelWrites(context, spec.name, expanded.writtenInParallel, expanded.files.length);
    for (const message of expanded.warnings) {
      context.onEvent({ type: "warning", dataset: spec.name, message });
    }
    if (expanded.files.length === 0) {
      // Published as it is (an empty archive is a valid one), but said: a job that finds
      // nothing under its path should not be the first to tell (exploratory tester, 2026-12-07).
      context.onEvent({
        type: "warning",
        dataset: spec.name,
        message: `the archive ${spec.uri} holds no file: the dataset is published without any`,
      });
    }
    return {
      files: expanded.files,
      verification: { [expanded.verification]: 1 },
      refetchedBytes: expanded.refetchedBytes,
    };
  }
  const fileName = baseNameOfKey(resolution.key);
  const destination = join(attempt.dataDir, fileName);
  // Under a clock: storage that stops taking the writes fails the dataset with STALLED, and
  // an interrupt is answered, instead of both waiting for the storage (progress-watchdog.ts).
  // (A streamed archive has the extraction's watchdog; a zip's download has this one too.)
  const result = await watchProgress(
    (watchedSignal, progressed) =>
      downloadObject({
        getter: client.getter,
        source,
        destination,
        parts,
        rangeSize: tuning.rangeSize,
        concurrency: tuning.rangeConcurrency,
        signal: watchedSignal,
        retry: {
          ...retry,
          signal: watchedSignal,
          onRetry: (error, attempt, delayMs) => {
            progressed(0);
            retry.onRetry?.(error, attempt, delayMs);
          },
        },
        onBytes: (bytes) => {
          progressed(bytes);
          progress.addBytes(bytes);
        },
        // Hashing that trails the download is progress (as for a folder's objects).
        onHashed: () => progressed(0),
        errorContext,
        directIo: tuning.directIo,
      }),
    {
      signal,
      stallMs: tuning.extractStallTimeoutMs,
      graceMs: stopGraceMs(tuning.extractStallTimeoutMs),
      dataset: spec.name,
      writing: destination,
      bytes: resolution.bytes,
      // After the last byte come the file's last datasync and its close, which report no
      // progress: bounded as publishing's sync is (a slow disk's whole dirty backlog), not
      // unwatched (hung storage, NFS flushing at close, left the dataset silent for as long
      // as it stayed hung: review, 2026-12-06).
      tailMs: SYNC_LIMIT_MS,
    },
  );
  progress.addObject();
  const file: ManifestFile =
    result.digest === undefined
      ? { path: fileName, bytes: result.bytes }
      : { path: fileName, bytes: result.bytes, digest: result.digest };
  return {
    files: [file],
    verification: { [result.verification]: 1 },
    refetchedBytes: result.refetchedBytes,
  };
}

/**
 * What cannot be staged at all, known before any byte: a key with no usable file name, a
 * download larger than its ephemeral volume. Pure.
 */
export function checkSupported(
  spec: DatasetSpec,
  resolution: Resolution,
  target: Target,
  fallback: string | undefined,
): void {
  if (resolution.kind === "object" && spec.archive === undefined) {
    const problem = baseNameOfKey(resolution.key);
    if (problem === "." || problem === "..") {
      throw new DsfetchError(
        "UNSAFE_PATH",
        `${spec.name}: the key ${JSON.stringify(resolution.key)} has no usable file name`,
        { dataset: spec.name },
      );
    }
  }
  if (target.volumeBytes !== undefined && resolution.bytes > target.volumeBytes) {
    throw volumeTooSmall(spec, resolution.bytes, target.volumeBytes, fallback, undefined);
  }
}

/** A dataset of `bytes` that its ephemeral volume cannot hold (`stagedAt`: already staged there). */
function volumeTooSmall(
  spec: DatasetSpec,
  bytes: number,
  volumeBytes: number,
  fallback: string | undefined,
  stagedAt: string | undefined,
): DsfetchError {
  const staged = stagedAt === undefined ? "" : ` (staged at ${stagedAt} with a larger volume)`;
  return new DsfetchError(
    "NO_SPACE",
    `${spec.name}: needs ${formatBytes(bytes)} (${bytes} bytes)${staged} but its ephemeral volume holds ${formatBytes(volumeBytes)} (${volumeBytes} bytes)${fallback === undefined ? "" : ` (the default size of a fallback volume: ${fallback})`}`,
    {
      dataset: spec.name,
      // After a fallback the volume is not the dataset's choice: shared storage is the
      // problem to fix (review, 2026-12-05).
      hint:
        fallback === undefined
          ? "raise volumeOptions.size above the dataset's size"
          : "make shared storage available again (the reason above); or give the dataset volumeOptions with a size above its own",
    },
  );
}

function buildManifest(
  spec: DatasetSpec,
  resolution: Resolution,
  download: Download,
): Manifest<WrittenFiles> {
  const object: ResolvedObject | undefined = resolution.kind === "object" ? resolution : undefined;
  const methods = Object.keys(download.verification);
  return {
    version: MANIFEST_VERSION,
    name: spec.name,
    uri: spec.uri,
    endpoint: spec.endpoint.url,
    kind: resolution.kind,
    etag: object?.etag,
    versionId: object?.versionId,
    listingDigest: resolution.kind === "prefix" ? resolution.listingDigest : undefined,
    bytes: resolution.bytes,
    files: download.files,
    verification: methods.length === 1 ? (methods[0] as string) : "mixed",
    createdAt: new Date().toISOString(),
    host: hostname(),
  };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) / 10) / 100;
}

/** Says when files were written several at once (util/write-mode.ts), and why. */
function reportParallelWrites(
  context: StageContext,
  dataset: string,
  parallel: number,
  files: number,
): void {
  if (parallel === 0) return;
  context.onEvent({
    type: "info",
    dataset,
    message:
      context.tuning.fileWrites === "parallel"
        ? `${parallel} of ${files} files written in parallel (DSFETCH_FILE_WRITES=parallel)`
        : `${parallel} of ${files} files written in parallel: creating files one at a time was slow on this storage (a network filesystem?)`,
  });
}

/**
 * Another version of a pinned dataset's source is at its path, and jobs use it (keptInUse):
 * the pinned version goes to an ephemeral volume instead (or, found at the swap, fails).
 */
class OtherVersionInUse extends Error {
  readonly users: readonly string[];
  readonly path: string;
  /** The version there is this one, changed since it was published (volumes/inspect.ts). */
  readonly altered: boolean;
  /** With `altered`: what changed, where known. */
  readonly change: string | undefined;

  constructor(path: string, users: readonly string[], altered = false, change?: string) {
    super(
      altered
        ? `${path} was changed after it was published, and is in use (${users.join(", ")})`
        : `${path} holds another version of the source, in use (${users.join(", ")})`,
    );
    this.path = path;
    this.users = users;
    this.altered = altered;
    this.change = change;
  }
}
