/**
 * Now on the storage's clock, for judging the age of what other machines stamped there by
 * writing (attempts' heartbeats: attempt.ts; leases: usage.ts): on NFS a write's mtime is the
 * server's time, and a machine whose clock was ahead of the server's took live attempts of
 * other machines for abandoned and removed them under their downloads (review, 2026-12-06).
 *
 * Read by making a probe file in `dir` and reading its mtime back: a lower bound of the
 * storage's time when the stat answered (the mtime was set before), so ages judged by it are
 * never longer than they are. The probe is removed at once; one left by a crash is removed by
 * the next clean-up of `dir` (PROBE_NAME, cleanup.ts).
 */
import { randomBytes } from "node:crypto";
import { rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** `.clock-<16 hex>`: not an attempt's name (attempt.ts parseAttemptName). */
export const PROBE_NAME = /^\.clock-[0-9a-f]{16}$/;

/**
 * A clock that reads now on the storage of `dir` (ms since the epoch), or this machine's
 * clock where the probe cannot be made there (a full or read-only storage: nothing to
 * compare with; what was done before 2026-12-06).
 */
export async function storageClock(dir: string): Promise<() => number> {
  const probe = join(dir, `.clock-${randomBytes(8).toString("hex")}`);
  try {
    await writeFile(probe, "", { flag: "wx" });
    const { mtimeMs } = await stat(probe);
    const answered = performance.now();
    return () => mtimeMs + (performance.now() - answered);
  } catch {
    return () => Date.now();
  } finally {
    await rm(probe, { force: true }).catch(() => {});
  }
}
