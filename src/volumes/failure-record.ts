/**
 * What the lock holder leaves beside the lock when staging failed for a reason every other
 * worker would meet again with the same bytes: a corrupt, truncated or hostile archive, data
 * that does not match its ETag. The workers that were waiting for it then fail with its
 * error instead of each taking the lock in turn and downloading the same broken object
 * again (16 workers: 16 downloads, one after the other). Objects, and folders by their
 * listing's digest. Only for a short while (the lock's
 * stale period): a run started later tries again, once.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { DsfetchError, type ErrorCode } from "../errors.ts";
import type { Resolution } from "../fetch/resolve.ts";

/** Errors that the same bytes give every time, whoever downloads them. */
const REPEATABLE: ReadonlySet<ErrorCode> = new Set(["ARCHIVE_INVALID", "UNSAFE_PATH", "INTEGRITY"]);

interface FailureRecord {
  readonly version: 1;
  /** What failed (an object version, a folder's listing): used only for exactly the same. */
  readonly source: Record<string, string | number | null>;
  readonly code: ErrorCode;
  readonly message: string;
  readonly hint: string | null;
  /** ms since the epoch. */
  readonly at: number;
  /** Host and pid of the worker that failed. */
  readonly by: string;
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
 * Records `error` for the waiting workers when it is one the same bytes always give.
 * Best effort: a record that cannot be written only costs them a download each.
 */
export async function recordFailure(
  path: string,
  resolution: Resolution,
  error: unknown,
  by: string,
): Promise<void> {
  if (!(error instanceof DsfetchError) || !REPEATABLE.has(error.code)) return;
  const record: FailureRecord = {
    version: 1,
    source: sourceOf(resolution),
    code: error.code,
    message: error.message,
    hint: error.hint ?? null,
    at: Date.now(),
    by,
  };
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(temporary, `${JSON.stringify(record)}\n`);
    await rename(temporary, path);
  } catch {
    await rm(temporary, { force: true }).catch(() => {});
  }
}

/**
 * The error another worker met staging exactly this source (object version, folder
 * listing) less than `maxAgeMs`
 * ago, to fail with instead of downloading it again; undefined otherwise.
 */
export async function recentFailure(
  path: string,
  resolution: Resolution,
  dataset: string,
  maxAgeMs: number,
  now = Date.now(),
): Promise<DsfetchError | undefined> {
  let record: Partial<FailureRecord>;
  try {
    record = JSON.parse(await readFile(path, "utf8")) as Partial<FailureRecord>;
  } catch {
    return undefined;
  }
  const ageMs = now - (record.at ?? 0);
  if (
    record.version !== 1 ||
    typeof record.code !== "string" ||
    !REPEATABLE.has(record.code) ||
    typeof record.message !== "string" ||
    ageMs < 0 ||
    ageMs > maxAgeMs ||
    JSON.stringify(record.source) !== JSON.stringify(sourceOf(resolution))
  ) {
    return undefined;
  }
  return new DsfetchError(
    record.code,
    `${record.message} (met by ${record.by ?? "another worker"} ${Math.round(ageMs / 1000)} s ago on the same ${resolution.kind === "prefix" ? "folder listing" : "object version"}: not downloaded again)`,
    {
      dataset,
      hint: `${record.hint ?? "fix the object in the store"}; a run started later tries again`,
    },
  );
}

/** Removes the record once the dataset was staged. */
export async function clearFailure(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => {});
}
