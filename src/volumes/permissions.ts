/**
 * Published datasets are read-only (SPEC §2: "files are never writable by the job"): files
 * 0444, directories 0555. That also means removing a tree (a failed attempt, a replaced
 * dataset, prune) must first give directories their write bit back when not running as root.
 */
import { chmodSync } from "node:fs";
import { chmod, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";

/** Makes the listed files and every directory below `root` read-only; `root` itself too unless `keepRoot`. */
export function makeReadOnly(
  root: string,
  files: readonly { path: string }[],
  keepRoot = false,
): void {
  const dirs = new Set<string>();
  for (const file of files) {
    chmodSync(join(root, file.path), 0o444);
    for (let dir = dirname(file.path); dir !== "." && !dirs.has(dir); dir = dirname(dir))
      dirs.add(dir);
  }
  // Deepest first, so a directory is still writable while its children change.
  for (const dir of [...dirs].sort((a, b) => b.length - a.length))
    chmodSync(join(root, dir), 0o555);
  if (!keepRoot) chmodSync(root, 0o555);
}

/** Gives a directory its owner write bit back (before moving it to another parent, or removing it). */
export async function makeWritable(path: string): Promise<void> {
  await chmod(path, 0o755).catch(() => {});
}

/** Removes a tree whatever its permissions. Never throws. */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch {
    // Read-only directories (not root): open them up, then try again.
  }
  try {
    await makeWritable(path);
    const entries = await readdir(path, { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      if (entry.isDirectory()) await makeWritable(join(entry.parentPath, entry.name));
    }
    await rm(path, { recursive: true, force: true });
  } catch {
    // Best effort: leftovers are cleaned by the next run (volumes/cleanup.ts).
  }
}
