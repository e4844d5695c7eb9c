/** Bytes of the regular files under a directory (its size as a dataset counts it). */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/** Unreadable entries count as nothing: this measures, it never fails. */
export async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true }).catch(() => [])) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile())
        total += await lstat(path).then(
          (s) => s.size,
          () => 0,
        );
    }
  };
  await walk(dir);
  return total;
}
