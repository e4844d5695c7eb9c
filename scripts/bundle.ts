/**
 * Bundles the `dsfetch` command and its worker threads from tsc's output (dist/) into
 * dist/bundle/: one file per program, which bin/dsfetch.js runs. Run by `npm run build`
 * after tsc.
 *
 * Why: Node's ES module loader takes ~1 ms per module to find, read, compile and link it;
 * `dsfetch fetch` loaded ~150 (dist/ and its dependencies): ~160 ms of every start on these
 * machines, and each extraction or hash thread loads its own again. One file: ~60 ms
 * (README, "Start-up"). The library API (dist/index.js) stays unbundled: programs that
 * import dsfetch load what they use.
 *
 * Kept outside the bundles: the AWS SDK (loaded only for the credential chain) and the
 * decompression packages (loaded only when no native decompressor is found), so that the
 * common start-up does not compile them.
 *
 * The tests bundle the same programs straight from src/ (bundlePrograms("src", …), from
 * test/global-setup.ts) at the start of each run: the CLI processes they start then load one
 * file, as installed, and never a stale build.
 */
import { realpathSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * Every program: the command, then each worker thread under the name its starter gives
 * workerFile() (util/worker-file.ts), which looks beside the bundle it runs in.
 */
const PROGRAMS: Record<string, string> = {
  dsfetch: "cli/entry",
  "main-thread-watchdog-worker": "cli/main-thread-watchdog-worker",
  "extract-worker": "archive/extract-worker",
  "zip-worker": "archive/zip-worker",
  "hash-worker": "fetch/hash-worker",
  "slot-hash-worker": "fetch/slot-hash-worker",
  "stream-hash-worker": "fetch/stream-hash-worker",
};

const EXTERNAL = ["@aws-sdk/*", "@smithy/*", "lzma-native", "unbzip2-stream"];

/**
 * Bundles every program from tsc's output (`"dist"`) or from the sources (`"src"`, for the
 * tests) into `out`, emptied first. `out` must be two levels below the repository, as
 * dist/bundle/ is: the bundled code finds package.json at ../../ (util/worker-file.ts).
 */
export async function bundlePrograms(from: "dist" | "src", out: string): Promise<void> {
  const extension = from === "dist" ? ".js" : ".ts";
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  await build({
    entryPoints: Object.fromEntries(
      Object.entries(PROGRAMS).map(([name, file]) => [name, `${root}${from}/${file}${extension}`]),
    ),
    outdir: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    external: EXTERNAL,
    // CommonJS dependencies (proper-lockfile, json5) call require() for Node's own modules.
    banner: {
      js: 'import { createRequire as __dsfetchRequire } from "node:module"; const require = __dsfetchRequire(import.meta.url);',
    },
    sourcemap: from === "dist" ? "linked" : false,
    logLevel: "warning",
  });
}

// `node scripts/bundle.ts` (npm run build): the installed command. Through realpath: run by a
// path with a symlink in it, argv[1] keeps the link and import.meta.url does not.
if (
  process.argv[1] !== undefined &&
  realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  await bundlePrograms("dist", `${root}dist/bundle/`);
}
