/**
 * The default ephemeral root, `<tmpdir>/dsfetch-ephemeral-<uid>` (config/settings.ts): one per
 * user, made here 0700 when missing, and refused unless it is this user's own before anything
 * is read from or written to it.
 *
 * Found in review (2026-12-05): the root was one `<tmpdir>/dsfetch-ephemeral` for everyone,
 * made 0700 by its first user, so a second user's fetch failed with EACCES. And a root in a
 * world-writable directory can be made in advance by another user (CWE-377, insecure
 * temporary directory): datasets staged into a directory someone else owns, or may write,
 * can be changed under the job without dsfetch noticing.
 */
import { lstat, mkdir } from "node:fs/promises";
import { DsfetchError } from "../errors.ts";

/**
 * Makes the default root (0700) when it is missing, else refuses it unless it is a directory
 * of this user's that only this user may write to. Made here, not by a later recursive
 * mkdir: one planted between a look and that mkdir would have been taken (review). A root
 * given by --ephemeral-root or DSFETCH_EPHEMERAL_ROOT is the user's choice (a Kubernetes
 * emptyDir is root-owned 0777) and is not checked. `create: false` (plan): only looked at.
 */
export async function ensureDefaultEphemeralRoot(
  root: string,
  { create = true }: { readonly create?: boolean } = {},
): Promise<void> {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  for (let tries = 0; tries < 3; tries++) {
    let problem: string | undefined;
    try {
      const found = await lstat(root);
      if (found.isSymbolicLink()) problem = "is a symbolic link";
      else if (!found.isDirectory()) problem = "is not a directory";
      else if (found.uid !== uid) {
        problem = `belongs to uid ${found.uid}, not to this user (uid ${uid})`;
      } else if ((found.mode & 0o022) !== 0) {
        problem = `may be written by other users (mode ${(found.mode & 0o777).toString(8)})`;
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        // `plan` writes nothing: fetch would make it.
        if (!create) return;
        try {
          await mkdir(root, { mode: 0o700 });
          return;
        } catch (making) {
          // Made by someone else meanwhile: looked at again. Anything else (no temporary
          // directory at all) is for the writes to report.
          if ((making as NodeJS.ErrnoException).code === "EEXIST") continue;
          return;
        }
      }
      problem = `cannot be looked at (${code ?? String(error)})`;
    }
    if (problem === undefined) return;
    throw new DsfetchError(
      "STORAGE",
      `${root}, the default ephemeral root, ${problem}: another user could change the datasets staged there`,
      {
        hint: "remove it (it holds only dsfetch's ephemeral datasets), or point --ephemeral-root (DSFETCH_EPHEMERAL_ROOT) at a directory of your own",
      },
    );
  }
}
