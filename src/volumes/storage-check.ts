/**
 * Can shared storage take this dataset? It must be mounted (the root exists and is a
 * directory: dsfetch never creates a storage root, since an empty directory where a volume
 * should be mounted means the volume is missing), writable, and have room for it.
 */
import { constants } from "node:fs";
import { access, stat, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { formatBytes } from "../config/size.ts";
import { bookkeepingRefusal, makeSharedDir } from "./shared-dirs.ts";
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
    return other(`${dataRoot} is not writable (${code})`);
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
