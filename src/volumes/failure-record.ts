/**
 * What the lock holder leaves beside the lock when staging failed on the stored object
 * itself: an archive that is broken or hostile although its bytes match the store's ETag
 * (a truncated upload, an unsafe entry). The workers that were waiting for that holder then
 * fail with its error instead of each taking the lock in turn and downloading the same
 * broken object again (8 workers: 8 downloads, one after the other).
 *
 * Only errors about verified bytes (DsfetchError.objectVerified): bytes damaged on the way,
 * a decompressor killed for memory, a bound of the volume's size or a stall are this worker's
 * own, and the next worker tries for itself (but bytes that do not match the object's ETag or
 * checksum, received the same by two downloads, are the store's: see INTEGRITY below). And
 * shared storage found full while writing
 * (ENOSPC): the holder stages the dataset on an ephemeral volume instead (SPEC §6), and the
 * workers that waited on it do so at once rather than each filling the storage in turn. Only for the workers that waited on that very holder (its
 * host, pid and lock time, as they saw it while waiting): a run started later tries again,
 * and no clock is compared across hosts.
 */
import { randomBytes } from "node:crypto";
import { readFile, rename, rm, stat, statfs } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { formatBytes } from "../config/size.ts";
import { DsfetchError, type ErrorCode } from "../errors.ts";
import type { Resolution } from "../fetch/resolve.ts";
import { isStorageFull } from "./attempt.ts";
import { hostLabel } from "./host-label.ts";
import type { Holder } from "./lock.ts";
import { writeNewFile } from "./no-follow.ts";
import { makeSharedDir } from "./shared-dirs.ts";

/** A record this much older than a worker's first look at an unnamed holder still counts. */
const UNIDENTIFIED_SLACK_MS = 2_000;

/** Errors about the archive's contents: the same for whoever downloads the same bytes. */
const ABOUT_THE_OBJECT: ReadonlySet<ErrorCode> = new Set(["ARCHIVE_INVALID", "UNSAFE_PATH"]);

interface FailureRecord {
  readonly version: 1;
  /** What failed (an object version, a folder's listing): used only for exactly the same. */
  readonly source: Record<string, string | number | null>;
  /** The holder that met the error. */
  readonly holder: Holder;
  /** Holders that failed from this record since, for the workers that waited on them. */
  readonly passedOn?: readonly Holder[];
  readonly code: ErrorCode;
  readonly message: string;
  readonly hint: string | null;
  /** The storage was full (ENOSPC, EDQUOT): about the storage then, not the object. */
  readonly storageFull?: true;
  /** With storageFull: the bytes it had written when the disk was full; it needs more. */
  readonly neededMoreThan?: number;
  /** INTEGRITY: the digest the holder computed (not the object's). */
  readonly found?: string;
  /** INTEGRITY: an earlier holder computed the same wrong digest: the store serves these bytes. */
  readonly repeated?: true;
}

function sourceOf(resolution: Resolution): FailureRecord["source"] {
  if (resolution.kind === "prefix") {
    const { bucket, prefix, listingDigest, bytes } = resolution;
    return { bucket, prefix, listingDigest, bytes };
  }
  const { bucket, key, etag, versionId, bytes } = resolution;
  return { bucket, key, etag, versionId: versionId ?? null, bytes };
}

/**
 * A holder as a record names it: with its host label (host name, PID namespace, boot) where
 * known, which tells two containers of one pod apart (the same host name, both often pid 1).
 */
function recordedHolder(holder: Holder): Holder {
  const { host, pid, since, label } = holder;
  return label === undefined ? { host, pid, since } : { host, pid, since, label };
}

function sameHolder(a: Holder, b: Holder): boolean {
  return a.host === b.host && a.pid === b.pid && a.since === b.since;
}

/**
 * Records `error` for the workers waiting on `holder` (this process) when it is about the
 * stored object. Best effort: a record that cannot be written only costs them a download.
 */
export async function recordFailure(
  path: string,
  resolution: Resolution,
  error: unknown,
  holder: Holder,
  { neededMoreThan }: { readonly neededMoreThan?: number | undefined } = {},
): Promise<void> {
  if (!(error instanceof DsfetchError)) return;
  if (isWrongDigest(error)) {
    await recordWrongDigest(path, resolution, error, holder);
    return;
  }
  const storageFull = isStorageFull(error);
  if (!storageFull && !(error.objectVerified && ABOUT_THE_OBJECT.has(error.code))) return;
  await writeRecord(path, {
    version: 1,
    source: sourceOf(resolution),
    holder: recordedHolder(holder),
    code: error.code,
    message: error.message,
    hint: error.hint ?? null,
    ...(storageFull ? { storageFull: true } : {}),
    ...(storageFull && neededMoreThan !== undefined && neededMoreThan > 0
      ? { neededMoreThan }
      : {}),
  });
}

/**
 * Adds `holder` (this process, which failed from the record) to those it names: the workers
 * that waited only on this one are spared too.
 */
export async function passOnFailure(path: string, holder: Holder): Promise<void> {
  let record: FailureRecord;
  try {
    record = JSON.parse(await readFile(path, "utf8")) as FailureRecord;
  } catch {
    return;
  }
  const passedOn = Array.isArray(record.passedOn) ? record.passedOn : [];
  await writeRecord(path, {
    ...record,
    passedOn: [...passedOn, recordedHolder(holder)],
  });
}

/**
 * Bytes whose digest is not the object's (INTEGRITY with a computed digest, not a short
 * count): damaged on the way, or served so by the store. Once, the next worker tries for
 * itself; when it computes the very same wrong digest, the bytes are the store's (damage on
 * the way does not repeat itself to the bit), and the workers waiting on it fail with that
 * instead of each downloading the object again (review, 2026-12-05: a store serving an
 * object whose bytes do not match its ETag, or a proxy that damages it the same way each
 * time, had N waiting workers download it N times, one after the other).
 */
function isWrongDigest(error: DsfetchError): error is DsfetchError & { found: string } {
  return (
    error.code === "INTEGRITY" && typeof error.found === "string" && !/^\d+$/.test(error.found)
  );
}

async function recordWrongDigest(
  path: string,
  resolution: Resolution,
  error: DsfetchError & { found: string },
  holder: Holder,
): Promise<void> {
  const source = sourceOf(resolution);
  let earlier: Partial<FailureRecord> | undefined;
  try {
    earlier = JSON.parse(await readFile(path, "utf8")) as Partial<FailureRecord>;
  } catch {
    earlier = undefined;
  }
  const repeated =
    earlier?.code === "INTEGRITY" &&
    earlier.found === error.found &&
    earlier.holder !== undefined &&
    !sameHolder(earlier.holder, holder) &&
    JSON.stringify(earlier.source) === JSON.stringify(source);
  const by = earlier?.holder;
  await writeRecord(path, {
    version: 1,
    source,
    holder: recordedHolder(holder),
    code: "INTEGRITY",
    message:
      repeated && by !== undefined
        ? `${error.message}; ${by.host} pid ${by.pid}'s download computed the same, so these are the bytes the store serves for it`
        : error.message,
    hint: repeated
      ? "two downloads received the same bytes, which do not match the object's ETag or checksum: the object is damaged in the store (or a proxy on the way changes it the same way each time); re-upload it, or check the proxy"
      : (error.hint ?? null),
    found: error.found,
    ...(repeated ? { repeated: true } : {}),
  });
}

async function writeRecord(path: string, record: FailureRecord): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await makeSharedDir(dirname(path));
    // 0644 whatever this process's umask: read by the waiters of every user (077 made it
    // 0600, and other users' waiters downloaded again what had failed: review, 2026-12-06).
    await writeNewFile(temporary, `${JSON.stringify(record)}\n`);
    await rename(temporary, path);
  } catch {
    await rm(temporary, { force: true }).catch(() => {});
  }
}

/**
 * The error that a holder this worker waited on (`waitedOn`) met on exactly this source, to
 * fail with instead of downloading it again; undefined otherwise. Storage found full is
 * given back as such (isStorageFull: true), for the caller to fall back.
 */
export async function failureOfAwaitedHolder(
  path: string,
  resolution: Resolution,
  dataset: string,
  waitedOn: readonly Holder[],
  {
    unidentifiedSince,
  }: {
    /**
     * When (this machine's clock) this worker first saw the lock held by a holder whose
     * holder file was not there yet: a holder that failed within a moment of taking the lock
     * was never named (CI, 2026-12-05: two workers on a full disk, the second tried again
     * what the first had just met). A record written since then is that holder's or a later
     * one's, about the same source version.
     */
    readonly unidentifiedSince?: number | undefined;
  } = {},
): Promise<DsfetchError | undefined> {
  if (waitedOn.length === 0 && unidentifiedSince === undefined) return undefined;
  let record: Partial<FailureRecord>;
  let writtenMs: number;
  try {
    const [text, info] = await Promise.all([readFile(path, "utf8"), stat(path)]);
    record = JSON.parse(text) as Partial<FailureRecord>;
    writtenMs = info.mtimeMs;
  } catch {
    return undefined;
  }
  const { holder } = record;
  const named = [...(holder === undefined ? [] : [holder]), ...(record.passedOn ?? [])];
  const storageFull = record.storageFull === true && record.code === "NO_SPACE";
  const storeBytes = record.code === "INTEGRITY" && record.repeated === true;
  // Its own failure, passed on by a worker that waited on it: this process retries shared
  // storage after it on purpose (stage/shared-writes.ts), and was told the failure was "met
  // by" itself (review).
  // By its host label too where the record has one: another container of this pod (the same
  // host name, pid 1 as this one) is not this process, and its failure was ignored here (a
  // download more: review, 2026-12-07, once ephemeral roots took locks).
  if (
    holder !== undefined &&
    holder.pid === process.pid &&
    holder.host === hostname() &&
    (holder.label === undefined || holder.label === hostLabel())
  ) {
    return undefined;
  }
  if (
    record.version !== 1 ||
    typeof record.code !== "string" ||
    !(storageFull || storeBytes || ABOUT_THE_OBJECT.has(record.code)) ||
    typeof record.message !== "string" ||
    holder === undefined ||
    !(
      waitedOn.some((seen) => named.some((one) => sameHolder(seen, one))) ||
      (unidentifiedSince !== undefined && writtenMs >= unidentifiedSince - UNIDENTIFIED_SLACK_MS)
    ) ||
    JSON.stringify(record.source) !== JSON.stringify(sourceOf(resolution))
  ) {
    return undefined;
  }
  const met = `met by ${holder.host} pid ${holder.pid}, whose download this worker waited for`;
  if (storageFull) {
    return new DsfetchError("NO_SPACE", `${record.message} (${met})`, {
      dataset,
      hint: record.hint ?? undefined,
      cause: Object.assign(new Error("no space left on device"), { code: "ENOSPC" }),
    });
  }
  return new DsfetchError(
    record.code,
    `${record.message} (${met}, on the same ${resolution.kind === "prefix" ? "folder listing" : "object version"}: not downloaded again)`,
    {
      dataset,
      hint: record.hint ?? "re-create or re-upload the object",
      // Bytes hashed and found equal to the store's (an archive refused): not so for a digest
      // that differs, the store's though it is.
      objectVerified: !storeBytes,
    },
  );
}

/** Removes the record once the dataset was staged. */
export async function clearFailure(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => {});
}

/** A source that found the storage full before: what it needed, who tried, and when. */
export interface NoRoomBefore {
  /** It needed more than this many bytes free in the data root. */
  readonly neededMoreThan: number;
  readonly holder: Holder;
  /** When the record was written (its mtime). */
  readonly at: Date;
}

/**
 * When exactly this source (object version, folder listing) met a full shared storage
 * before, on any run: a later run with no more room free falls back at once instead of
 * filling the disk again (review: a dataset that never fits was downloaded into shared
 * storage until it was full by every run, then again into its ephemeral volume).
 */
export async function noRoomBefore(
  path: string,
  resolution: Resolution,
): Promise<NoRoomBefore | undefined> {
  let record: Partial<FailureRecord>;
  let at: Date;
  try {
    const [text, info] = await Promise.all([readFile(path, "utf8"), stat(path)]);
    record = JSON.parse(text) as Partial<FailureRecord>;
    at = info.mtime;
  } catch {
    return undefined;
  }
  const { holder, neededMoreThan } = record;
  if (
    record.version !== 1 ||
    record.storageFull !== true ||
    holder === undefined ||
    typeof neededMoreThan !== "number" ||
    JSON.stringify(record.source) !== JSON.stringify(sourceOf(resolution))
  ) {
    return undefined;
  }
  return { neededMoreThan, holder, at };
}

/**
 * Why a dataset goes straight to an ephemeral volume: exactly this source met the full disk
 * before (failure-record.ts noRoomBefore), and no more is free now. Undefined: try.
 */
export async function noRoomNow(
  failurePath: string,
  resolution: Resolution,
  dataRoot: string,
): Promise<string | undefined> {
  const before = await noRoomBefore(failurePath, resolution);
  if (before === undefined) return undefined;
  const free = await statfs(dataRoot).then(
    (fs) => fs.bavail * fs.bsize,
    () => undefined,
  );
  // It met the full disk after writing `neededMoreThan`: with about as much free now (its
  // directories, lock and manifests take some too: the margin) it would again.
  const margin = Math.max(1024 * 1024, before.neededMoreThan / 50);
  if (free === undefined || free > before.neededMoreThan + margin) return undefined;
  return `${dataRoot} had no room for it when ${before.holder.host} pid ${before.holder.pid} tried (${before.at.toISOString()}): it had written ${formatBytes(before.neededMoreThan)} (${before.neededMoreThan} bytes) when the disk was full, and ${formatBytes(free)} (${free} bytes) ${free === 1 ? "is" : "are"} free now (free space there, e.g. dsfetch prune, and it is tried again)`;
}
