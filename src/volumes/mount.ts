/**
 * Makes a staged dataset appear at `<mount-root>/<name>` (SPEC §2): a symlink to the
 * read-only dataset directory, created or updated atomically (symlink beside it, then
 * rename over). Idempotent. A mount path occupied by anything dsfetch did not create is
 * an error and is never overwritten.
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, readlink, rename, rm, symlink } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { DsfetchError } from "../errors.ts";
import { storageError } from "./attempt.ts";

export type MountOutcome = "created" | "unchanged" | "updated";

/**
 * @param ownedRoots directories whose datasets dsfetch manages: a symlink into one of
 *   them is ours to update.
 */
export async function mountDataset(
  mountPath: string,
  datasetPath: string,
  dataset: string,
  ownedRoots: readonly string[],
): Promise<MountOutcome> {
  let existing: string | undefined;
  try {
    const stats = await lstat(mountPath);
    if (!stats.isSymbolicLink()) throw occupied(mountPath, dataset, "is a real file or directory");
    existing = await readlink(mountPath);
  } catch (error) {
    if (error instanceof DsfetchError) throw error;
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      throw mountError(error, mountPath, dataset, datasetPath);
    }
  }
  if (existing !== undefined) {
    const target = resolve(dirname(mountPath), existing);
    if (target === datasetPath) return "unchanged";
    const ours = ownedRoots.some((root) =>
      target.startsWith(root.endsWith(sep) ? root : root + sep),
    );
    if (!ours) {
      // Where a dataset of another storage root or team would be (<root>/<team>/data/<name>):
      // an earlier run's link, which "dsfetch did not make" misnamed (exploratory review,
      // 2026-12-07). Told by its path, not by a look there (an old root may be a dead mount).
      // Not replaced all the same: another job may share this mount root.
      const dsfetchs = basename(dirname(target)) === "data";
      throw occupied(
        mountPath,
        dataset,
        dsfetchs
          ? `is a link to ${target}, a dataset of another storage root or team than this run's, it seems (an earlier run's link?)`
          : `is a link to ${target}, which dsfetch did not make`,
        dsfetchs
          ? `remove the link (rm ${mountPath}) once no job reads through it, or choose another --mount-root (DSFETCH_MOUNT_ROOT)`
          : undefined,
      );
    }
  }
  const temporary = join(dirname(mountPath), `.${dataset}.mount-${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(dirname(mountPath), { recursive: true });
    await symlink(datasetPath, temporary, "dir");
    await rename(temporary, mountPath);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => {});
    throw mountError(error, mountPath, dataset, datasetPath);
  }
  return existing === undefined ? "created" : "updated";
}

function occupied(
  mountPath: string,
  dataset: string,
  what: string,
  hint = "remove it, or choose another --mount-root (DSFETCH_MOUNT_ROOT)",
): DsfetchError {
  return new DsfetchError(
    "STORAGE",
    `${dataset}: the mount path ${mountPath} ${what}; dsfetch will not replace it`,
    { dataset, hint },
  );
}

/**
 * A mount link that could not be made, said as one: it was "cannot write to <path>: ENOTDIR"
 * for a mount root that is a file, naming no dataset, with a hint about the storage roots
 * (exploratory review, 2026-12-07). A full disk stays NO_SPACE.
 */
function mountError(
  error: unknown,
  mountPath: string,
  dataset: string,
  datasetPath: string,
): DsfetchError {
  const failure = storageError(error, mountPath);
  if (failure.code !== "STORAGE") return failure;
  const code = (error as NodeJS.ErrnoException).code;
  const why =
    code === "ENOTDIR"
      ? "a part of its path is a file, not a directory (ENOTDIR)"
      : code === "EACCES" || code === "EPERM"
        ? `permission denied (${code})`
        : code === "EROFS"
          ? "read-only filesystem (EROFS)"
          : (error as Error).message;
  return new DsfetchError(
    "STORAGE",
    `${dataset}: cannot make the mount link ${mountPath}: ${why}`,
    {
      dataset,
      hint: `the mount root (--mount-root, DSFETCH_MOUNT_ROOT) must be a directory this user may write, or one it may make; the dataset itself is staged at ${datasetPath}`,
      cause: error,
    },
  );
}
