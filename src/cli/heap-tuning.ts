/**
 * Bounds V8's young generation in the dsfetch process at 8 MiB semi-spaces (the CLI only:
 * programs that use the library keep their own settings; dsfetch's worker threads stay at
 * 1 MiB, util/worker-limits.ts). V8 doubles the young generation while a program
 * allocates fast, up to 64 MiB semi-spaces here (128 MiB of new space), and keeps it: peak
 * RSS 240 MiB for 20,000 objects of 16 KiB. Kept at its starting size (1 MiB) instead, as
 * until 2026-12-06, every request in flight outlived a scavenge: 20,000 objects allocate
 * ~36 KB each (headers, signatures, promises), 128 are in flight, so each scavenge copied
 * and promoted nearly all of them (496 scavenges, ~0.95 s). Grown to 8 MiB and no further,
 * alternated with that on tmpfs: user CPU 3.2-4.2 s against 4.1-5.1 s, peak RSS 143-167 MiB
 * against 171-184 MiB (less promoted to the old generation).
 *
 * `--max-semi-space-size` would say this only on the command line (set at run time it is
 * ignored); the growth factor is read whenever V8 considers growing, so it is 2 until the
 * young generation is 8 MiB, then 1 (measured: set at the first GC that finds it there, the
 * young generation stayed at 16 MiB of new space). A soft bound: V8 reports collections
 * after the code that caused them, so one long synchronous burst (JSON.parse of a manifest
 * of 1,000,000 files in the old format) grew it to 128 MiB of new space, for the rest of the
 * run (review, 2026-12-06). The image's entrypoint says `--max-semi-space-size=8`, which V8
 * holds from the start; whoever sets a semi-space flag in NODE_OPTIONS or on the command
 * line wins, and this module then does nothing.
 *
 * The old generation starts at 64 MiB instead of a few: what survives two scavenges
 * (promises of requests in flight) is promoted, and a full mark-compact ran every ~60 ms on a
 * 9 MB heap while a tar of 20,000 files streamed (15 of them). Read at run time too: 15 -> 8
 * on that fetch; alternated on tmpfs, 5 runs each, 1.50-1.61 s against 1.59-1.69 s, user CPU
 * 1.41-1.62 against 1.55-1.70 s; peak RSS the same (the limit is reached only by garbage).
 *
 * After a full collection, the old generation may grow to 1.25 times what it kept before
 * the next one (`--heap-growing-percent=25`; V8 picks 1.1-4 by its GC speed, and here chose
 * ~3): a folder's objects promoted while in flight are garbage that waited for a collection
 * that came rarely. A folder of 400,000 objects (a local stand-in store): peak RSS 421 ->
 * 282 MB, 25 full collections instead of 4 (253 ms of pauses in ~40 s against 50 ms); 20,000
 * objects of 16 KiB from MinIO: 159-162 -> 140-142 MiB, 7 instead of 2 (+34 ms); times
 * within noise. Not when the command line says it (NODE_OPTIONS refuses the flag). V8's
 * flags are the process's: dsfetch's worker threads grow so too (a thread keeping objects
 * while making garbage peaked at 106-120 MiB of used heap against 239; review).
 *
 * Imported first by entry.ts, before anything allocates.
 */
import { PerformanceObserver } from "node:perf_hooks";
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";

/** Both semi-spaces together: V8's "new_space" size once they are 8 MiB each. */
const NEW_SPACE_CAP = 16 * 2 ** 20;

const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" ");
if (!/semi[-_]space/.test(given)) {
  setFlagsFromString("--semi-space-growth-factor=2");
  const observer = new PerformanceObserver(() => {
    const young = getHeapSpaceStatistics().find((space) => space.space_name === "new_space");
    if (young !== undefined && young.space_size >= NEW_SPACE_CAP) {
      setFlagsFromString("--semi-space-growth-factor=1");
      observer.disconnect();
    }
  });
  observer.observe({ entryTypes: ["gc"] });
}
if (!/old[-_]space/.test(given)) setFlagsFromString("--initial-old-space-size=64");
if (!/heap[-_]growing/.test(given)) setFlagsFromString("--heap-growing-percent=25");
