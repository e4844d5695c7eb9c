/**
 * Files named after the process that holds them, `<label>.<pid>.<random>` (leases: usage.ts;
 * removal notices: removal-notice.ts): whose each is, and whether its process is known to be
 * gone. A pid is judged only by processes of the same label (host-label.ts).
 */
import { randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { isProcessAlive } from "./cleanup.ts";
import { hostLabel } from "./host-label.ts";
import { writeNewFile } from "./no-follow.ts";
import { makeSharedDir } from "./shared-dirs.ts";

export interface HolderFile {
  readonly name: string;
  readonly path: string;
  /** "host pid N". */
  readonly holder: string;
  /** Its process is of this label and no longer runs. */
  readonly goneHere: boolean;
}

/**
 * The files in `dir`; none when it does not exist. Any other error is thrown: files that
 * cannot be read are not "none" (review, 2026-12-05: a refresh or prune went ahead).
 */
export async function readHolderFiles(dir: string): Promise<HolderFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const thisHost = hostLabel();
  return names.map((name) => {
    const [host = "", pidText = ""] = name.split(".");
    const pid = Number(pidText);
    return {
      name,
      path: join(dir, name),
      holder: `${host} pid ${pidText}`,
      goneHere: host === thisHost && Number.isInteger(pid) && !isProcessAlive(pid),
    };
  });
}

/** A new holder file's path in `dir` (made if missing), for this process: `<label>.<pid>.<hex>`. */
export async function newHolderPath(dir: string, randomByteCount: number): Promise<string> {
  await makeSharedDir(dir);
  return join(dir, `${hostLabel()}.${process.pid}.${randomBytes(randomByteCount).toString("hex")}`);
}

/**
 * Writes a holder file whole, or removes it: created, then not written (a full volume),
 * nobody would ever take it down (review).
 */
export async function writeHolderFile(path: string): Promise<void> {
  for (let tries = 1; ; tries++) {
    try {
      await writeNewFile(path, new Date().toISOString());
      return;
    } catch (error) {
      await rm(path, { force: true }).catch(() => {});
      // Its directory taken away by a prune between newHolderPath's mkdir and this write (prune
      // removes a removed dataset's empty lease and notice directories): made again.
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" && tries < 3) {
        await makeSharedDir(dirname(path));
        continue;
      }
      // A full disk (found in session 22: `prune` failed on the very storage it was run to
      // free, a job on its cached dataset): an empty file needs no data block, and only its
      // name and time are ever read. Its refreshes may fail until space is freed (the
      // caller's staleness rules cover that).
      if (code === "ENOSPC" || code === "EDQUOT") {
        try {
          await writeNewFile(path, "");
          return;
        } catch {
          await rm(path, { force: true }).catch(() => {});
        }
      }
      throw error;
    }
  }
}
