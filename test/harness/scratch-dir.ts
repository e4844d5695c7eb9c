// Where a test run's temporary files go (TMPDIR for the test workers and the S3 server's data):
// a directory of the run's own on a tmpfs (/dev/shm) when it has room, else TMPDIR as given.
//
// Why: on these machines /tmp is ext4 without a journal, and after a run's own mass deletions
// creating files there slowed by 2-4x (ext4's recently_deleted(), seen with perf in session
// 36). In the clean-clone CI of 2026-12-07 the file-heavy tests took 85 s more than on tmpfs
// (folder-memory 34.7 s against 13.3, zip-extract 37.0 against 19.9), and the run went over
// its 10 minutes. Tests that need a disk's own behaviour mount one of their own (loop images,
// tmpfs of a given size). DSFETCH_TEST_TMPDIR=<dir> chooses the parent; "system" keeps TMPDIR.
import { closeSync, constants, openSync, rmSync } from "node:fs";
import { chmod, mkdir, readdir, rm, stat, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pidAlive } from "./minio-binary.ts";

const TMPFS = "/dev/shm";
/**
 * Free space a tmpfs must have to be used: a full run held at most 2.4 GiB there at once
 * (`df` every 2 s, 2026-12-07; the S3 server's data included). It is memory: twice that and more.
 */
const MIN_FREE_BYTES = 8 * 1024 ** 3;
const PREFIX = "dsfetch-tests-";
const TMPFS_MAGIC = 0x01021994;

export interface ScratchDir {
  /** The directory given to the run as TMPDIR (as it was when nothing better was found). */
  readonly dir: string;
  /** For the run's log: where, and why there. */
  readonly description: string;
  remove(): Promise<void>;
}

/** Removes the directories of runs whose process is gone (killed before their teardown). */
async function removeLeftovers(parent: string): Promise<void> {
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length));
    if (!Number.isInteger(pid) || pidAlive(pid)) continue;
    await rm(join(parent, name), { recursive: true, force: true }).catch(() => {});
  }
}

/** Whether a file in `dir` can be opened with O_DIRECT. */
function takesDirectIo(dir: string): boolean {
  const path = join(dir, `${PREFIX}probe-${process.pid}`);
  try {
    closeSync(openSync(path, constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT, 0o600));
    return true;
  } catch {
    return false;
  } finally {
    rmSync(path, { force: true });
  }
}

async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}

export async function chooseScratchDir(): Promise<ScratchDir> {
  const asGiven: ScratchDir = {
    dir: tmpdir(),
    description: `${tmpdir()} (TMPDIR as given)`,
    remove: async () => {},
  };
  const wanted = process.env.DSFETCH_TEST_TMPDIR;
  if (wanted === "system") return asGiven;
  let parent = wanted;
  if (parent === undefined) {
    const fs = await statfs(TMPFS).catch(() => undefined);
    if (fs === undefined || fs.type !== TMPFS_MAGIC) return asGiven;
    if ((await freeBytes(TMPFS)) < MIN_FREE_BYTES) return asGiven;
    // The direct-write tests (download-direct.test.ts) need O_DIRECT in TMPDIR: tmpfs takes it
    // from Linux 6.6 on.
    if (!takesDirectIo(TMPFS)) return asGiven;
    parent = TMPFS;
  }
  if (!(await stat(parent).catch(() => undefined))?.isDirectory()) {
    throw new Error(`DSFETCH_TEST_TMPDIR=${parent}: not a directory`);
  }
  await removeLeftovers(parent);
  const dir = join(parent, `${PREFIX}${process.pid}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  // As /tmp: tests run the CLI as other users, which make their own directories here.
  await chmod(dir, 0o1777);
  return {
    dir,
    description: `${dir} (${wanted === undefined ? "a tmpfs" : "DSFETCH_TEST_TMPDIR"}, ${((await freeBytes(dir)) / 1024 ** 3).toFixed(0)} GiB free)`,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
