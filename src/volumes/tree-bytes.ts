/** Bytes of the regular files under a directory (its size as a dataset counts it). */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/** Unreadable entries count as nothing: this measures, it never fails. */
export async function bytesUnder(dir: string): Promise<number> {
  return (await usageUnder(dir)).bytes;
}

/**
 * The bytes of the regular files under `dir`, and its entries (itself included: the inodes
 * its removal frees, links aside). Unreadable entries count as nothing.
 */
export async function usageUnder(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 1;
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true }).catch(() => [])) {
      entries++;
      const path = join(at, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile())
        bytes += await lstat(path).then(
          (s) => s.size,
          () => 0,
        );
    }
  };
  await walk(dir);
  return { bytes, entries };
}
