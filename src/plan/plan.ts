/**
 * The pure planning core: a dataset, what the store says about it and what is on disk →
 * one plan entry (data, no I/O). `dsfetch plan` prints these; staging executes them.
 */
import type { ArchiveFormat } from "../archive/formats.ts";
import { type SourceAt, sameSource, sameSourceAt, storeOf } from "../config/s3-uri.ts";
import { formatBytes } from "../config/size.ts";
import type { DatasetSpec } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";
import type { Resolution, ResolvedObject } from "../fetch/resolve.ts";
import type { StagedState } from "../volumes/inspect.ts";
import type { Manifest } from "../volumes/manifest.ts";
import type { Target } from "./target.ts";

/**
 * A copy at a dataset's path that a fetch replaces (plan's `replaces`) or replaced (fetch's
 * `replaced`): staged from an older version of the same source, or changed since it was
 * published (this version or an older one), or both.
 */
export interface ReplacedCopy {
  readonly etag: string | null;
  readonly versionId: string | null;
  readonly stagedAt: string;
  /**
   * What is there was changed since it was published (files added, removed, rewritten or
   * made writable: volumes/inspect.ts), whichever version it is (its `etag`/`versionId` say:
   * until 2026-12-07 a copy both changed and of an older version said only the latter);
   * fetch stages the dataset again.
   */
  readonly changed?: true;
  /** With `changed`: what changed, as far as dsfetch can tell (tree-seal.ts). */
  readonly change?: string;
}

/** The copy `state` describes, as `replaces`/`replaced` say it; `changed` when it was. */
export function replacedCopyOf(
  manifest: Manifest,
  state: Pick<StagedState, "altered" | "change">,
): ReplacedCopy {
  const changed = state.altered === true;
  return {
    etag: manifest.etag ?? null,
    versionId: manifest.versionId ?? null,
    stagedAt: manifest.createdAt,
    ...(changed ? { changed: true as const } : {}),
    ...(changed && state.change !== undefined ? { change: state.change } : {}),
  };
}

export interface PlanError {
  readonly code: string;
  readonly message: string;
  readonly hint?: string;
}

/** One dataset in a plan. Field names are the `plan --json` output: keep them stable. */
export interface PlanEntry {
  readonly name: string;
  readonly uri: string;
  readonly kind: "object" | "prefix" | null;
  readonly etag: string | null;
  readonly versionId: string | null;
  readonly bytes: number | null;
  readonly objects: number | null;
  readonly archive: ArchiveFormat | null;
  readonly volume: "shared" | "ephemeral";
  readonly path: string | null;
  readonly mount: string;
  readonly cached: boolean;
  /**
   * Its source changed, but the published version would be kept: in use by these jobs
   * ("host pid N"; see refreshWaitsForJobs). `cached` is then true.
   */
  readonly keptInUse?: readonly string[];
  /** Why fetch would stage it into an ephemeral volume instead of shared storage (its path). */
  readonly fallback?: string;
  /**
   * Not cached, but an older version of the same source is staged at the path, or a copy
   * changed since it was published (`changed`): fetch replaces it (review, 2026-12-05: `plan`
   * said only "no", as if nothing were there). Beside an `error` (a store that cannot be
   * reached, and the copy of a pinned version changed: dry-run.ts), fetch does not use it and
   * replaces it once the store answers.
   */
  readonly replaces?: ReplacedCopy;
  /**
   * The store could not be reached (this error), and fetch would use the staged copy of the
   * pinned ETag or version without it (`cached` is then true).
   */
  readonly storeUnreachable?: string;
  /**
   * Cached, with files of other modification times than when it was published (same names
   * and sizes: volumes/inspect.ts): fetch uses it and warns (plan said nothing: exploratory
   * review, 2026-12-07).
   */
  readonly timesChanged?: true;
  /** Cached, with files its owner made writable since it was published: fetch warns. */
  readonly madeWritable?: true;
  /** A zip's entries' declared sizes, summed (from its central directory). */
  readonly expandedBytes?: number;
  readonly error?: PlanError;
}

export function planEntry(
  spec: DatasetSpec,
  resolution: Resolution,
  staged: StagedState,
  target: Target,
): PlanEntry {
  const object = resolution.kind === "object" ? resolution : undefined;
  let entry: PlanEntry = {
    name: spec.name,
    uri: spec.uri,
    kind: resolution.kind,
    etag: object?.etag ?? null,
    versionId: object?.versionId ?? null,
    bytes: resolution.bytes,
    objects:
      object === undefined ? (resolution.kind === "prefix" ? resolution.objects.length : 0) : 1,
    archive: object === undefined ? null : (spec.archive ?? null),
    volume: target.volume,
    path: target.location.path,
    mount: target.mount,
    cached: isCached(resolution, staged, spec),
  };
  if (entry.cached && staged.timesChanged === true) entry = { ...entry, timesChanged: true };
  if (entry.cached && staged.madeWritable === true) entry = { ...entry, madeWritable: true };
  const older = staged.manifest;
  const replacing =
    !entry.cached && staged.exists && older !== undefined && sameSource(older.uri, spec.uri);
  if (replacing) {
    // Changed since it was published, whichever version it is: said (`changed`).
    entry = { ...entry, replaces: replacedCopyOf(older, staged) };
  }
  const tooBig = checkFits(spec, resolution, target);
  return tooBig === undefined ? entry : { ...entry, error: tooBig };
}

/** The dataset's source as manifests record it: its URI and endpoint. */
export function sourceOf(spec: Pick<DatasetSpec, "uri" | "endpoint">): SourceAt {
  return { uri: spec.uri, endpoint: spec.endpoint.url };
}

/** A failed dataset: what is known from the config, and the error. */
export function failedEntry(
  spec: DatasetSpec,
  target: Target | undefined,
  error: DsfetchError,
): PlanEntry {
  return {
    name: spec.name,
    uri: spec.uri,
    kind: null,
    etag: spec.etag ?? null,
    versionId: spec.versionId ?? null,
    bytes: null,
    objects: null,
    archive: spec.archive ?? null,
    volume: target?.volume ?? (spec.volume.kind === "ephemeral" ? "ephemeral" : "shared"),
    path: target?.location.path ?? null,
    mount: target?.mount ?? "",
    cached: false,
    error: errorOf(error),
  };
}

export function errorOf(error: DsfetchError): PlanError {
  return error.hint === undefined
    ? { code: error.code, message: error.message }
    : { code: error.code, message: error.message, hint: error.hint };
}

/**
 * Published, with a manifest that records what the store has now: the same listing, or the
 * same object bytes. An object's ETag names its bytes; another version of the same ETag (the
 * same bytes uploaded again to a versioned bucket) is the same dataset unless the datasets
 * array pins the versionId (review, 2026-12-06: a dataset pinned by etag was downloaded again
 * after such a re-upload, and while jobs used it, into an ephemeral volume instead).
 */
export function isCached(
  resolution: Resolution,
  staged: StagedState,
  spec: Pick<DatasetSpec, "versionId">,
): boolean {
  const manifest = staged.manifest;
  if (!staged.exists || manifest === undefined || manifest.kind !== resolution.kind) return false;
  // Changed since it was published (volumes/inspect.ts): staged again.
  if (staged.altered === true) return false;
  if (resolution.kind === "prefix") return manifest.listingDigest === resolution.listingDigest;
  return (
    manifest.etag === resolution.etag &&
    (spec.versionId === undefined ||
      (manifest.versionId ?? undefined) === (resolution.versionId ?? undefined))
  );
}

/**
 * Whether a changed source waits for the jobs using the published version (their leases)
 * instead of replacing it under them: a dataset not pinned to a version (no etag, no
 * versionId). A pinned version is always staged. Whatever the kind of either: a folder that
 * became an object of the same URI (or the reverse) was swapped in under the jobs reading the
 * old one, no lease looked at (review, 2026-12-06).
 */
export function refreshWaitsForJobs(
  spec: DatasetSpec,
  published: Manifest | undefined,
): published is Manifest {
  return (
    published !== undefined &&
    spec.etag === undefined &&
    spec.versionId === undefined &&
    // Only an older version of this very source is given to the job (review, 2026-12-06:
    // another store's copy, or another URI's, was kept for it as "changed since staged").
    sameSourceAt(published, sourceOf(spec))
  );
}

/**
 * Whether a version pinned in the datasets array (etag, versionId) would replace another
 * version of the same source at the path (of either kind): never while jobs use that one
 * (stage-dataset.ts).
 */
export function pinnedOverOtherVersion(
  spec: DatasetSpec,
  published: Manifest | undefined,
): boolean {
  if (published === undefined || !sameSource(published.uri, spec.uri)) return false;
  // The same URI read from another store is as good as pinned: this job must not be given
  // that copy, and it must not be replaced under the jobs of that store.
  return (
    spec.etag !== undefined ||
    spec.versionId !== undefined ||
    storeOf(published.endpoint) !== storeOf(spec.endpoint.url)
  );
}

/**
 * The error of a pinned dataset whose path (an ephemeral volume's, or shared storage's found
 * in use only at the swap) holds another version of its source that jobs use.
 */
export function otherVersionInUse(
  spec: DatasetSpec,
  path: string,
  users: readonly string[],
  /**
   * When those jobs started using it: while this run downloaded, or since its first look.
   * `altered`: what is there is this version, changed since it was published (tree-seal.ts).
   */
  {
    meanwhile,
    altered = false,
    change,
  }: {
    readonly meanwhile?: "downloaded" | "waited";
    readonly altered?: boolean;
    /** With `altered`, what changed, where known (inspect.ts StagedState.change). */
    readonly change?: string | undefined;
  } = {},
): DsfetchError {
  const using =
    meanwhile === undefined
      ? "jobs are using"
      : meanwhile === "waited"
        ? "jobs started using meanwhile"
        : "jobs started using while this one downloaded";
  if (altered) {
    return new DsfetchError(
      "PATH_TAKEN",
      `${spec.name}: ${path} was changed after it was published${change === undefined ? "" : ` (${change})`}, and ${using} it (${users.join(", ")}): it is not staged again under them`,
      {
        dataset: spec.name,
        hint:
          meanwhile !== undefined
            ? "run again: a changed dataset whose path is in use is staged into an ephemeral volume"
            : `stage it once those jobs are done (the first run then replaces it), and find the job that writes into ${path}: give jobs the storage read-only (dsfetch k8s renders it so)`,
      },
    );
  }
  const pin = [
    spec.etag === undefined ? undefined : `etag ${spec.etag}`,
    spec.versionId === undefined ? undefined : `versionId ${spec.versionId}`,
  ]
    .filter((part) => part !== undefined)
    .join(", ");
  // Not pinned: the copy there was read from another store (pinnedOverOtherVersion).
  const pinText = pin !== "" ? pin : `from ${spec.endpoint.url ?? "AWS S3"}, not the copy's store`;
  return new DsfetchError(
    "PATH_TAKEN",
    `${spec.name}: ${path} holds another version of ${spec.uri}, which ${using} (${users.join(", ")}): the pinned version (${pinText}) is not swapped in under them`,
    {
      dataset: spec.name,
      hint:
        meanwhile !== undefined
          ? "run again: a pinned version whose path is in use is staged into an ephemeral volume"
          : 'give the dataset another "name" (a path of its own), or stage it once those jobs are done',
    },
  );
}

/**
 * Why a pinned dataset goes to an ephemeral volume: its shared path holds another version in
 * use, or (`altered`) this one changed since it was published, in use.
 */
export function otherVersionFallback(
  spec: DatasetSpec,
  path: string,
  users: readonly string[],
  altered = false,
  change?: string,
): string {
  if (altered) {
    return `${path} was changed after it was published${change === undefined ? "" : ` (${change})`}, and jobs are using it (${users.join(", ")}): not staged again under them`;
  }
  return `${path} holds another version of ${spec.uri} that jobs are using (${users.join(", ")}), not replaced under them`;
}

/** An ephemeral volume smaller than the download is refused before any byte is written. */
function checkFits(
  spec: DatasetSpec,
  resolution: Resolution,
  target: Target,
): PlanError | undefined {
  if (target.volumeBytes === undefined || resolution.bytes <= target.volumeBytes) return undefined;
  const error = new DsfetchError(
    "NO_SPACE",
    `${spec.name}: needs ${formatBytes(resolution.bytes)} (${resolution.bytes} bytes) but its ephemeral volume holds ${formatBytes(target.volumeBytes)} (${target.volumeBytes} bytes, volumeOptions.size ${spec.volume.kind === "ephemeral" ? spec.volume.sizeText : ""})`,
    { dataset: spec.name, hint: "raise volumeOptions.size above the dataset's size" },
  );
  return errorOf(error);
}

/**
 * Whether the datasets array pins this exact data: by its ETag (the bytes), or by a versionId
 * other than "null" (an S3 object version is immutable; the null version of a bucket that is
 * not versioned, or whose versioning is suspended, is overwritten in place: no pin).
 */
export function pinsData(spec: Pick<DatasetSpec, "etag" | "versionId">): boolean {
  return spec.etag !== undefined || (spec.versionId !== undefined && spec.versionId !== "null");
}

/**
 * The staged copy of a pinned dataset (pinsData), as the version the store would resolve: the
 * same source (endpoint, bucket, key), the pinned ETag when pinned, the pinned versionId when
 * pinned. For a store that cannot be reached (stage/stage-dataset.ts stagedCopyOfPin, and the
 * plan of it: dry-run.ts); undefined when `manifest` is not of that copy.
 */
export function pinnedCopy(
  spec: DatasetSpec,
  manifest: Manifest | undefined,
): ResolvedObject | undefined {
  if (
    !pinsData(spec) ||
    manifest === undefined ||
    manifest.kind !== "object" ||
    manifest.etag === undefined ||
    (spec.etag !== undefined && manifest.etag !== spec.etag) ||
    (spec.versionId !== undefined && manifest.versionId !== spec.versionId) ||
    !sameSourceAt(manifest, sourceOf(spec))
  ) {
    return undefined;
  }
  return {
    kind: "object",
    bucket: spec.location.bucket,
    key: spec.location.key,
    etag: manifest.etag,
    versionId: manifest.versionId ?? undefined,
    bytes: manifest.bytes,
    lastModified: undefined,
    encryption: undefined,
    checksum: undefined,
    checksumRejected: [],
  };
}

/** The pin of a dataset as said in messages: "ETag <etag>", "version <versionId>", or both. */
export function pinInWords(spec: Pick<DatasetSpec, "etag" | "versionId">): string {
  return [
    spec.etag === undefined ? undefined : `ETag ${spec.etag}`,
    spec.versionId === undefined ? undefined : `version ${spec.versionId}`,
  ]
    .filter((part) => part !== undefined)
    .join(", ");
}
