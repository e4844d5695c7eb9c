// Fresh lock paths for tests of the fetch-once lock (src/volumes/lock.ts), each in a case
// directory of its own under one temporary root per test file, removed after the file.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";

export function useLockPaths(prefix: string): {
  /** `<root>/case-N/.dsfetch/locks/train.lock`, its directory made. */
  newLockPath: () => Promise<string>;
  /** The temporary root (set once the file's tests run). */
  root: () => string;
} {
  let root: string | undefined;
  let count = 0;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), prefix));
  });
  afterAll(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });
  const rootNow = () => {
    if (root === undefined) throw new Error("useLockPaths: used before the tests run");
    return root;
  };
  return {
    root: rootNow,
    newLockPath: async () => {
      const locks = join(rootNow(), `case-${count++}`, ".dsfetch", "locks");
      await mkdir(locks, { recursive: true });
      return join(locks, "train.lock");
    },
  };
}
