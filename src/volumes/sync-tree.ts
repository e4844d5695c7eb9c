/**
 * Makes a finished tree durable before it is published: one syncfs(2) of its filesystem
 * (`sync -f`) instead of an fsync per file, which costs milliseconds per file on ext4 and
 * would dominate a folder of 20,000 small objects. Then the directory entries that the
 * rename will move are fsynced. Falls back to fsync of every file where `sync -f` is absent.
 */
import { execFile } from "node:child_process";
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** How long `sync -f` may take (a whole filesystem's dirty data, other writers' included). */
export const SYNC_LIMIT_MS = 10 * 60_000;

/**
 * `signal` kills the `sync` in flight (its call was given up on: stage/storage-calls.ts,
 * whose bound is then the limit; without one, SYNC_LIMIT_MS is). `progressed` is called for
 * each file of the fallback.
 */
export async function syncTree(
  root: string,
  signal?: AbortSignal,
  progressed?: () => void,
): Promise<void> {
  try {
    await run("sync", ["-f", root], {
      killSignal: "SIGKILL",
      ...(signal === undefined ? { timeout: SYNC_LIMIT_MS } : { signal }),
    });
  } catch (error) {
    // Stopped, by its limit or by its caller: not a reason to fsync every file instead.
    if (signal?.aborted === true) throw error;
    if ((error as { killed?: boolean }).killed === true) {
      throw new Error(`sync -f did not finish within ${SYNC_LIMIT_MS / 1000} s`);
    }
    // `sync` missing, or without -f (busybox, coreutils before 8.24).
    await fsyncEveryFile(root, progressed);
  }
}

/** fsync of a directory makes the entries in it (created files, renames) durable. */
export async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncEveryFile(root: string, progressed?: () => void): Promise<void> {
  const entries = await readdir(root, { withFileTypes: true, recursive: true });
  for (const entry of entries) {
    const path = join(entry.parentPath, entry.name);
    if (entry.isFile() || entry.isDirectory()) {
      const handle = await open(path, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      progressed?.();
    }
  }
  await fsyncDirectory(root);
}
