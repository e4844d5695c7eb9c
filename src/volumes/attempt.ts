/**
 * A private temporary directory for one staging attempt, on the same filesystem as the
 * final path (so publishing is one rename): `<meta>/tmp/<dir>.<host>.<pid>.<random>/` with
 * mode 0700, holding `data/` (the dataset being built) and `manifest.json`.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { DsfetchError } from "../errors.ts";
import { hostLabel } from "./host-label.ts";
import type { DatasetLocation } from "./layout.ts";
import { removeTree, removeTreeReporting } from "./permissions.ts";

export interface Attempt {
  readonly dir: string;
  readonly dataDir: string;
  readonly manifestPath: string;
}

export async function createAttempt(location: DatasetLocation): Promise<Attempt> {
  const id = `${basename(location.path)}.${hostLabel()}.${process.pid}.${randomBytes(4).toString("hex")}`;
  const dir = join(location.tmpDir, id);
  try {
    await mkdir(location.tmpDir, { recursive: true, mode: 0o700 });
    await mkdir(dir, { mode: 0o700 });
    await chmod(dir, 0o700);
    await mkdir(join(dir, "data"), { mode: 0o755 });
  } catch (error) {
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

export function storageError(error: unknown, path: string): DsfetchError {
  // Already said (a call on the storage that got no answer: STALLED).
  if (error instanceof DsfetchError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new DsfetchError("NO_SPACE", `no space left on the device holding ${path}`, {
      hint: "free space in shared storage (dsfetch prune) or give the dataset a larger volume",
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
          : ((error as Error).message ?? String(error));
  return new DsfetchError("STORAGE", `cannot write to ${path}: ${why}`, {
    hint: "check that the storage root is mounted and writable by this user",
    cause: error,
  });
}
