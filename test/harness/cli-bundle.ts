// The CLI the tests run, bundled from src/ once per test run (scripts/bundle.ts): hundreds of
// CLI processes each loaded ~150 modules from the sources (Node strips the types) and so did
// each of their worker threads. One file per program, as installed, saves ~0.1 CPU-s per
// `dsfetch fetch` on these 2-core machines (0.27-0.29 s of user CPU against 0.15-0.19).
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundlePrograms } from "../../scripts/bundle.ts";

/** Bundles of runs, one directory per vitest process: two runs side by side keep apart. */
const BUNDLES = fileURLToPath(new URL("../../.test-bundle", import.meta.url));

export interface CliBundle {
  /** The command's file: run it with process.execPath. */
  entry: string;
  rebuild(): Promise<void>;
  remove(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes the bundles of runs whose process is gone (killed before their teardown). */
async function removeLeftovers(): Promise<void> {
  const names = await readdir(BUNDLES).catch(() => [] as string[]);
  for (const name of names) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || !alive(pid)) {
      await rm(join(BUNDLES, name), { recursive: true, force: true });
    }
  }
}

export async function bundleCliForRun(): Promise<CliBundle> {
  await removeLeftovers();
  // Two levels below the repository, as dist/bundle/ is: the bundle finds package.json at ../../.
  const out = join(BUNDLES, String(process.pid));
  const rebuild = () => bundlePrograms("src", `${out}/`);
  await rebuild();
  return {
    entry: join(out, "dsfetch.js"),
    rebuild,
    remove: () => rm(out, { recursive: true, force: true }),
  };
}
