// The CLI the tests run, bundled from src/ once per test run (scripts/bundle.ts): hundreds of
// CLI processes each loaded ~150 modules from the sources (Node strips the types) and so did
// each of their worker threads. One file per program, as installed, saves ~0.1 CPU-s per
// `dsfetch fetch` on these 2-core machines (0.27-0.29 s of user CPU against 0.15-0.19).
import { chmod, mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundlePrograms } from "../../scripts/bundle.ts";
import { pidAlive } from "./minio-binary.ts";

/** Bundles of runs, one directory per vitest process: two runs side by side keep apart. */
const BUNDLES = fileURLToPath(new URL("../../.test-bundle", import.meta.url));

/**
 * How old a run's bundle must be before another run removes it when its process is not
 * seen: a run in another PID namespace (a container sharing the checkout) is not seen alive.
 */
const LEFTOVER_AGE_MS = 6 * 3_600_000;

export interface CliBundle {
  /** The command's file: run it with process.execPath. */
  entry: string;
  /** Builds it again from src/ (watch mode); a failure is written into the entry, not thrown. */
  rebuild(): Promise<void>;
  remove(): Promise<void>;
}

/** Removes the bundles of runs that ended without their teardown (killed). */
async function removeLeftovers(): Promise<void> {
  const names = await readdir(BUNDLES).catch(() => [] as string[]);
  for (const name of names) {
    const path = join(BUNDLES, name);
    const pid = Number(name);
    const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? 0);
    if (!Number.isInteger(pid) || (!pidAlive(pid) && age > LEFTOVER_AGE_MS)) {
      await rm(path, { recursive: true, force: true });
    }
  }
}

/**
 * Readable by every user whatever the runner's umask: tests run the CLI as another uid
 * (other-users, lock-permissions, ephemeral-root), and a 0700 bundle made them skip.
 */
async function readableByAll(dir: string): Promise<void> {
  await chmod(BUNDLES, 0o755);
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isFile()) await chmod(join(dir, entry.name), 0o644);
  }
}

export async function bundleCliForRun(): Promise<CliBundle> {
  await mkdir(BUNDLES, { recursive: true });
  await removeLeftovers();
  // Two levels below the repository, as dist/bundle/ is: the bundle finds package.json at ../../.
  const out = join(BUNDLES, String(process.pid));
  const entry = join(out, "dsfetch.js");
  const build = async () => {
    await bundlePrograms("src", `${out}/`);
    await readableByAll(out);
  };
  await build();
  return {
    entry,
    rebuild: async () => {
      try {
        await build();
      } catch (error) {
        // Watch mode, a source saved half-written: the CLI tests fail saying why, and the
        // watcher goes on (thrown, it ended the vitest session).
        const said = JSON.stringify(`tests: the CLI did not bundle from src/: ${String(error)}\n`);
        await mkdir(out, { recursive: true });
        await writeFile(entry, `process.stderr.write(${said});\nprocess.exit(1);\n`);
      }
    },
    remove: () => rm(out, { recursive: true, force: true }),
  };
}
