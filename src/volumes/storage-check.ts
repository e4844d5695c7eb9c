/**
 * Can shared storage take this dataset? It must be mounted (the root exists and is a
 * directory: dsfetch never creates a storage root, since an empty directory where a volume
 * should be mounted means the volume is missing), writable, and have room for it.
 */
import { constants } from "node:fs";
import { access, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { formatBytes } from "../config/size.ts";
import { bookkeepingRefusal, makeSharedDir, ownerOf } from "./shared-dirs.ts";
import { makeProbeFile } from "./storage-probe.ts";

/**
 * Why shared storage cannot take `bytes` more, or undefined when it can. `create: false`
 * (`plan`, which writes nothing) looks at the nearest existing directory above a missing
 * data root instead of making it.
 */
/** Why shared storage cannot take a dataset; `space`: only too little room (it may be freed). */
export interface StorageProblem {
  readonly reason: string;
  readonly space: boolean;
}

export async function sharedStorageProblem(
  storageRoot: string,
  dataRoot: string,
  bytes: number,
  { create = true }: { readonly create?: boolean } = {},
): Promise<StorageProblem | undefined> {
  const other = (reason: string): StorageProblem => ({ reason, space: false });
  try {
    const root = await stat(storageRoot);
    if (!root.isDirectory()) return other(`${storageRoot} is not a directory`);
  } catch {
    return other(`${storageRoot} does not exist (is the shared volume mounted?)`);
  }
  let existing = dataRoot;
  try {
    if (create) await makeSharedDir(dataRoot, { plain: true });
    else existing = await nearestExisting(dataRoot, storageRoot);
    await access(existing, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    return other(await notWritable(dataRoot, storageRoot, code));
  }
  // Writable, but its bookkeeping perhaps not (another user's directories: shared-dirs.ts).
  const refused = await bookkeepingRefusal(dataRoot, { repair: create });
  if (refused !== undefined) return other(refused);
  if (create) await makeProbeFile(dataRoot);
  try {
    const fs = await statfs(existing);
    const free = fs.bavail * fs.bsize;
    if (free < bytes) {
      return {
        reason: `${dataRoot} has ${formatBytes(free)} (${free} bytes) free, the dataset needs ${formatBytes(bytes)} (${bytes} bytes)`,
        space: true,
      };
    }
  } catch {
    // statfs unsupported: let the write itself tell.
  }
  return undefined;
}

/**
 * Why the data root cannot be written, naming the directory that refused: a missing team
 * directory under a root only its owner may write said "<root>/<team>/data is not writable",
 * a directory that did not exist (session 40's note).
 */
async function notWritable(dataRoot: string, storageRoot: string, code: string): Promise<string> {
  if (code === "EROFS") return `${dataRoot} is on a read-only filesystem (EROFS)`;
  const refusing = await nearestExisting(dataRoot, storageRoot).catch(() => undefined);
  if (refusing === undefined || (code !== "EACCES" && code !== "EPERM")) {
    return `${dataRoot} is not writable (${code})`;
  }
  // Its modes let this user write: something else refused (an ACL, SELinux, an NFS server's
  // root_squash, a chown of the group): naming its owner and mode would mislead (review).
  const modesAllow = await access(refusing, constants.W_OK | constants.X_OK).then(
    () => true,
    () => false,
  );
  if (modesAllow) {
    return `${dataRoot} is not writable (${code}), although ${refusing} looks writable to this user: an ACL, a security module (SELinux, AppArmor) or the server (NFS root_squash) refused`;
  }
  const owner = await ownerOf(refusing);
  const who = `this user (uid ${process.getuid?.() ?? "?"})${owner === "" ? "" : `: it is ${owner}`}`;
  if (refusing === dataRoot) return `${dataRoot} is not writable by ${who} (${code})`;
  return `${dataRoot} cannot be made: ${refusing} is not writable by ${who} (${code}); its owner (or root) can make ${dataRoot} with \`mkdir -p\` and give it to this user or its group`;
}

/** `dir`, or its nearest ancestor that exists (never above `top`). */
async function nearestExisting(dir: string, top: string): Promise<string> {
  for (let at = dir; ; at = dirname(at)) {
    try {
      await stat(at);
      return at;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || at === top || dirname(at) === at) {
        throw error;
      }
    }
  }
}

/**
 * Bytes free for this user where `dir` is or will be (its nearest existing ancestor: it is
 * made later, with the attempt's modes); undefined when it cannot tell (the writes will).
 */
export async function freeBytes(dir: string): Promise<number | undefined> {
  for (let at = dir; ; at = dirname(at)) {
    try {
      const fs = await statfs(at);
      return fs.bavail * fs.bsize;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || dirname(at) === at) {
        return undefined;
      }
    }
  }
}
