/**
 * A private temporary directory for one staging attempt, on the same filesystem as the
 * final path (so publishing is one rename): `<meta>/tmp/<dir>.<host>.<pid>.<random>/` (<dir>
 * shortened when long: attemptToken) with
 * mode 0700, holding `data/` (the dataset being built) and `manifest.json`.
 */
import { createHash, randomBytes } from "node:crypto";
import { statfsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DsfetchError } from "../errors.ts";
import { hostLabel } from "./host-label.ts";
import type { DatasetLocation } from "./layout.ts";
import { chmodDir } from "./no-follow.ts";
import { removeTree, removeTreeReporting } from "./permissions.ts";
import { makeSharedDir, retryWhereReplaced } from "./shared-dirs.ts";

export interface Attempt {
  readonly dir: string;
  readonly dataDir: string;
  readonly manifestPath: string;
}

/** Directory names up to this long go into attempt names whole. */
const WHOLE_NAME_LENGTH = 100;

/**
 * The dataset's part of its attempts' names: its directory name, shortened when long. A
 * file name holds 255 bytes, and a directory name may be 199 (a name of 160 characters, an
 * etag of 32 and its part count): with the host label, pid and random part after it, the
 * attempt's name did not fit (review, 2026-12-05). `~` is never in a dataset's name.
 */
export function attemptToken(dirName: string): string {
  if (dirName.length <= WHOLE_NAME_LENGTH) return dirName;
  const digest = createHash("sha256").update(dirName).digest("hex").slice(0, 12);
  return `${dirName.slice(0, 80)}~${digest}`;
}

/**
 * The random part that ends an attempt's name (its pending manifest is named by it): 8 bytes,
 * unique among the attempts of one dataset without the host and pid beside it.
 */
export const ATTEMPT_RANDOM = /^[0-9a-f]{16}$/;

/** The random part that ends an attempt's name (its pending manifest is named by it). */
export function attemptRandom(attemptDir: string): string {
  return basename(attemptDir).split(".").at(-1) ?? "";
}

/** How often a live attempt's directory is touched (keepAttemptFresh). */
export const ATTEMPT_HEARTBEAT_MS = 60_000;

/**
 * Touches the attempt's directory every `everyMs` until stopped. Another host's attempt is
 * taken for abandoned once its directory has been left untouched for ten minutes (cleanup.ts),
 * and a directory's time changes only when its own entries do: one large object written for
 * longer than that left its attempt "untouched", and a worker that took over a lock its
 * downloader had lost (its refreshes late) removed the attempt under the download (review,
 * 2026-12-05). Best effort: a touch that fails is tried again at the next beat.
 */
export function keepAttemptFresh(dir: string, everyMs = ATTEMPT_HEARTBEAT_MS): () => void {
  // An entry made and removed, not a utimes: the directory's time is then the server's on
  // NFS (a utimes carries this machine's clock, and other hosts compare it with theirs).
  const beat = join(dir, ".heartbeat");
  let touching: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    touching = touching
      .then(async () => {
        await writeFile(beat, "", { flag: "wx" }).catch(() => {});
        await rm(beat, { force: true });
      })
      .catch(() => {});
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

export interface AttemptName {
  readonly dirName: string;
  readonly host: string;
  readonly pid: number;
}

/** `<dir>.<host>.<pid>.<random>` → its parts (the dataset directory name may hold dots). */
export function parseAttemptName(name: string): AttemptName | undefined {
  const parts = name.split(".");
  if (parts.length < 4) return undefined;
  const pid = Number(parts.at(-2));
  const host = parts.at(-3) ?? "";
  if (!Number.isInteger(pid) || pid <= 0 || host === "") return undefined;
  return { dirName: parts.slice(0, -3).join("."), host, pid };
}

export async function createAttempt(location: DatasetLocation): Promise<Attempt> {
  const token = attemptToken(basename(location.path));
  const id = `${token}.${hostLabel()}.${process.pid}.${randomBytes(8).toString("hex")}`;
  const dir = join(location.tmpDir, id);
  try {
    // Shared by the team's users (shared-dirs.ts); each attempt in it is private (0700).
    await makeSharedDir(location.tmpDir);
    // The first attempt made in a new tmp directory (shared-dirs.ts makeDirInPlace).
    await retryWhereReplaced(location.tmpDir, () => mkdir(dir, { mode: 0o700 }));
  } catch (error) {
    throw storageError(error, location.tmpDir);
  }
  try {
    await chmodDir(dir, 0o700);
    await mkdir(join(dir, "data"), { mode: 0o755 });
  } catch (error) {
    // Not left behind half made (found in review: the last inode went to `dir`, and the
    // empty attempt stayed until a later run's clean-up).
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    throw storageError(error, location.tmpDir);
  }
  return { dir, dataDir: join(dir, "data"), manifestPath: join(dir, "manifest.json") };
}

/**
 * Removes an attempt's directory, whatever state it is in. Never throws. With `progressed`,
 * entry by entry, calling it after each, until `signal` (the clock it runs under:
 * stage/storage-calls.ts).
 */
export async function discardAttempt(
  attempt: Attempt,
  progressed?: () => void,
  signal?: AbortSignal,
): Promise<void> {
  if (progressed !== undefined) {
    try {
      await removeTreeReporting(attempt.dir, progressed, signal);
      return;
    } catch {
      // Given up on: nothing more. Otherwise the plain removal tries once more.
      if (signal?.aborted === true) return;
    }
  }
  await removeTree(attempt.dir);
}

/**
 * Removes what an attempt's data directory holds, leaving it empty as createAttempt made it
 * (an archive expanded again). Entry by entry, calling `progressed` after each, until `signal`.
 */
export async function emptyDataDir(
  attempt: Attempt,
  progressed: () => void,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await removeTreeReporting(attempt.dataDir, progressed, signal);
    await mkdir(attempt.dataDir, { mode: 0o755 });
  } catch (error) {
    throw storageError(error, attempt.dataDir);
  }
}

/**
 * A NO_SPACE error raised by the filesystem (ENOSPC, EDQUOT somewhere in its causes), not by a
 * bound of dsfetch's own (a volume's size, DSFETCH_MAX_EXPANDED_SIZE): the storage is full.
 */
export function isStorageFull(error: unknown): boolean {
  if (!(error instanceof DsfetchError) || error.code !== "NO_SPACE") return false;
  let cause: unknown = error.cause;
  for (let depth = 0; depth < 8 && cause instanceof Error; depth++) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === "ENOSPC" || code === "EDQUOT") return true;
    cause = cause.cause;
  }
  return false;
}

export function storageError(error: unknown, path: string): DsfetchError {
  // Already said (a call on the storage that got no answer: STALLED).
  if (error instanceof DsfetchError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    // ENOSPC is also the answer of a filesystem out of inodes with bytes free (many small
    // files): "no space" sent users to free bytes that were there (exploratory review).
    if (code === "ENOSPC" && noInodesLeft(path)) {
      return new DsfetchError(
        "NO_SPACE",
        `no inodes left on the device holding ${path} (every file it can hold is used, although bytes are free: df -i)`,
        {
          hint: "remove files on that filesystem (on shared storage: dsfetch prune), or give it more inodes (a larger nr_inodes for a tmpfs)",
          cause: error,
        },
      );
    }
    return new DsfetchError("NO_SPACE", `no space left on the device holding ${path}`, {
      hint: "free space on that disk (on shared storage: dsfetch prune), or give the dataset a larger volume",
      cause: error,
    });
  }
  const why =
    code === "EACCES" || code === "EPERM"
      ? "permission denied"
      : code === "EROFS"
        ? "read-only filesystem"
        : code === "ENOENT"
          ? "a parent directory does not exist"
          : code === "EEXIST" && (error as NodeJS.ErrnoException).syscall === "mkdir"
            ? // A file where a directory of the layout goes (`<team>/data` a file): "EEXIST"
              // named no cause (exploratory review).
              `${(error as NodeJS.ErrnoException).path ?? "a part of it"} is in the way: it exists and is not a directory (move it away)`
            : code === "ENOTDIR"
              ? `a part of ${(error as NodeJS.ErrnoException).path ?? "that path"} is a file, not a directory (move it away)`
              : ((error as Error).message ?? String(error));
  return new DsfetchError("STORAGE", `cannot write to ${path}: ${why}`, {
    hint: "check that its root (--storage-root, or --ephemeral-root for an ephemeral volume) is mounted and writable by this user",
    cause: error,
  });
}

/**
 * Whether the filesystem holding `path` (or its nearest existing parent) has no inode left.
 * Filesystems that count none (btrfs says 0 of 0) have not run out. Asked once an ENOSPC
 * came back, so the storage answers.
 */
function noInodesLeft(path: string): boolean {
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      const found = statfsSync(dir);
      // With bytes left too: ZFS counts its free inodes from its free bytes, and says none
      // when only the bytes ran out (review).
      return found.files > 0 && found.ffree === 0 && found.bavail * found.bsize >= 1 << 20;
    } catch {
      if (dirname(dir) === dir) return false;
    }
  }
}
