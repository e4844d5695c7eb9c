/**
 * Keeps V8's young generation at its starting size in the dsfetch process (the CLI only:
 * programs that use the library keep their own settings). V8 doubles the young generation
 * while a program allocates fast, and keeps it; dsfetch's garbage is per request (headers,
 * signatures, listing entries) and dies young whatever the size. Measured here, 20,000
 * objects of 16 KiB: peak RSS 240 -> 128 MiB in the same time (5.5 s); 2 GiB object
 * 116 -> 110 MiB; archives: same times. `--max-semi-space-size` does the same only on the
 * command line (set at run time it is ignored); the growth factor is read whenever V8
 * considers growing. Whoever sets either flag in NODE_OPTIONS or on the command line wins.
 *
 * The old generation starts at 64 MiB instead of a few: with the young generation kept small,
 * what survives two scavenges (promises of requests in flight) is promoted, and a full
 * mark-compact ran every ~60 ms on a 9 MB heap while a tar of 20,000 files streamed (15 of
 * them). Read at run time too: 15 -> 8 on that fetch; alternated on tmpfs, 5 runs each,
 * 1.50-1.61 s against 1.59-1.69 s, user CPU 1.41-1.62 against 1.55-1.70 s; peak RSS the same
 * (the limit is reached only by garbage); a 2 GiB object the same.
 *
 * Imported first by entry.ts, before anything allocates.
 */
import { setFlagsFromString } from "node:v8";

const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" ");
if (!/semi[-_]space/.test(given)) setFlagsFromString("--semi-space-growth-factor=1");
if (!/old[-_]space/.test(given)) setFlagsFromString("--initial-old-space-size=64");
