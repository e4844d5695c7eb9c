/**
 * The default ephemeral root, `<tmpdir>/dsfetch-ephemeral-<uid>` (config/settings.ts): one per
 * user, and checked to be this user's own before anything is read from or written to it.
 *
 * Found in review (2026-12-05): the root was one `<tmpdir>/dsfetch-ephemeral` for everyone,
 * made 0700 by its first user, so a second user's fetch failed with EACCES. And a root in a
 * world-writable directory can be made in advance by another user (CWE-377, insecure
 * temporary directory): datasets staged into a directory someone else owns, or may write,
 * can be changed under the job without dsfetch noticing.
 */
import { lstat } from "node:fs/promises";
import { defaultEphemeralRoot } from "../config/settings.ts";
import { DsfetchError } from "../errors.ts";

/**
 * Refuses the default root when it is not a directory of this user's that only this user may
 * write to. A root that does not exist yet is made later, 0700 (volumes/attempt.ts). A root
 * given by --ephemeral-root is the user's choice (a Kubernetes emptyDir is root-owned 0777)
 * and is not checked.
 */
export async function checkDefaultEphemeralRoot(root: string): Promise<void> {
  if (root !== defaultEphemeralRoot()) return;
  const uid = process.getuid?.();
  if (uid === undefined) return;
  let problem: string | undefined;
  try {
    const found = await lstat(root);
    if (found.isSymbolicLink()) problem = "is a symbolic link";
    else if (!found.isDirectory()) problem = "is not a directory";
    else if (found.uid !== uid)
      problem = `belongs to uid ${found.uid}, not to this user (uid ${uid})`;
    else if ((found.mode & 0o022) !== 0) {
      problem = `may be written by other users (mode ${(found.mode & 0o777).toString(8)})`;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    problem = `cannot be looked at (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
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
