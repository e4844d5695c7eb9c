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
 */
import { mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = `${root}dist/`;
const out = `${dist}bundle/`;

/**
 * Every program: the command, then each worker thread under the name its starter gives
 * workerFile() (util/worker-file.ts), which looks beside the bundle it runs in.
 */
const PROGRAMS: Record<string, string> = {
  dsfetch: "cli/entry.js",
  "main-thread-watchdog-worker": "cli/main-thread-watchdog-worker.js",
  "extract-worker": "archive/extract-worker.js",
  "zip-worker": "archive/zip-worker.js",
  "hash-worker": "fetch/hash-worker.js",
  "slot-hash-worker": "fetch/slot-hash-worker.js",
  "stream-hash-worker": "fetch/stream-hash-worker.js",
};

const EXTERNAL = ["@aws-sdk/*", "@smithy/*", "lzma-native", "unbzip2-stream"];

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: Object.fromEntries(
    Object.entries(PROGRAMS).map(([name, file]) => [name, `${dist}${file}`]),
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
  sourcemap: "linked",
  logLevel: "warning",
});
