/**
 * Makes the directories of a tree being written (a folder's objects, or the objects a
 * restart keeps: kept-objects.ts), each once: with synchronous calls while creates are fast,
 * through the thread pool within the creates' share once they turn out slow (network
 * storage), one call per directory: a synchronous mkdir on a hung mount would stop the whole
 * thread (found in review: across directories, nearly every object of the first round makes
 * one).
 */
import { mkdirSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { SlowCreates } from "../util/slow-creates.ts";
import { storageError } from "../volumes/attempt.ts";

/** A function that makes `dir` (recursively, 0755) unless it was made already; `root` exists. */
export function dirMaker(creates: SlowCreates, root: string): (dir: string) => Promise<void> {
  const created = new Set<string>([root]);
  const pending = new Map<string, Promise<void>>();
  const inPool = async (dir: string): Promise<void> => {
    const turn = creates.acquire();
    if (turn !== undefined) await turn;
    try {
      await mkdir(dir, { recursive: true, mode: 0o755 });
    } finally {
      creates.release();
    }
    created.add(dir);
  };
  return async (dir: string): Promise<void> => {
    if (created.has(dir)) return;
    try {
      if (creates.slow) {
        let making = pending.get(dir);
        if (making === undefined) {
          making = inPool(dir);
          pending.set(dir, making);
        }
        await making;
        return;
      }
      mkdirSync(dir, { recursive: true, mode: 0o755 });
    } catch (error) {
      throw storageError(error, dir);
    }
    created.add(dir);
  };
}
