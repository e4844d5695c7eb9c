// The whole benchmark (`npm run bench`): one command that installs or finds the peers (s5cmd from
// the Go module proxy, rclone and the AWS CLI from Debian packages: bench/peers.ts), starts the
// local MinIO once, prepares every data set, and measures dsfetch against s5cmd, the AWS CLI and
// rclone in the same run, section by section:
//
//   big      one large object (--big-size, default 2 GiB)                       bench/fetch.ts
//   small    many small objects (--small-count × --small-size: 20,000 × 16 KiB)  bench/fetch.ts
//   archive  .tar.gz, .tar.xz, .zip fetch + expand (--formats; bz2, tar too)     bench/archive.ts
//   warm     the big and the small dataset again, already staged (--warm)        bench/scenarios.ts
//   crowd    --workers (16) processes at once on one --crowd-size (1 GiB) object bench/scenarios.ts
//
//   npx node bench/all.ts [--sections big,small,archive,warm,crowd] [--runs 3]
//                         [--tools dsfetch,s5cmd,aws,rclone] [--big-size 2Gi] [--part-size 8Mi]
//                         [--small-count 20000] [--small-size 16Ki] [--formats gz,xz,zip]
//                         [--archive-size 1Gi] [--bz2-size 256Mi] [--xz-level 1]
//                         [--warm big,small] [--workers 16] [--crowd-size 1Gi] [--idle-wait 60]
//                         [--ignore-other-bench] [--regenerate] [--keep]
//
// Output (stdout, Markdown): one summary table (a row per scenario: dsfetch's median wall time and
// peak RSS, each peer's, dsfetch/peer, a reference where there is one), the notes (how to
// reproduce it, source, machine, settings), then each section's detail table. Logs go to stderr.

import { prepareArchiveData, runArchiveSection, uploadArchives } from "./archive.ts";
import type { ArchiveInfo } from "./archive-data.ts";
import {
  type Flag,
  fmtBytes,
  fmtCount,
  log,
  parseOptions,
  renderSummaryTable,
  runMain,
  type Section,
  type SectionResult,
  type ToolName,
} from "./common.ts";
import { runFetchSection, uploadFetchData } from "./fetch.ts";
import { runCrowdSection, runWarmSection, uploadCrowdObject } from "./scenarios.ts";
import { benchMain } from "./session.ts";

const SCRIPT = "bench/all.ts";
const ALL_FLAGS: readonly Flag[] = [
  "--sections",
  "--runs",
  "--tools",
  "--big-size",
  "--part-size",
  "--small-count",
  "--small-size",
  "--formats",
  "--archive-size",
  "--bz2-size",
  "--xz-level",
  "--warm",
  "--workers",
  "--crowd-size",
  "--idle-wait",
  "--ignore-other-bench",
  "--regenerate",
  "--keep",
];

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv, SCRIPT, ALL_FLAGS);
  const has = (s: Section): boolean => opts.sections.includes(s);
  // s5cmd uploads the archives: it is set up whenever there are archives.
  const tools: ToolName[] = [...opts.tools];
  if (has("archive") && !tools.includes("s5cmd")) tools.push("s5cmd");
  const p = { script: SCRIPT, npmScript: "bench", argv, opts, prefix: "dsfetch-bench", tools };
  return benchMain(
    p,
    // The archives first (made once per machine and cached: minutes the first time).
    async () => (has("archive") ? await prepareArchiveData(opts) : undefined),
    async (session, archives) => {
      const started = performance.now();
      const needed = (["big", "small"] as const).filter(
        (d) => has(d) || (has("warm") && opts.warm.includes(d)),
      );
      const data = await uploadFetchData(session, opts, needed);
      const crowdObject = has("crowd") ? await uploadCrowdObject(session, opts) : undefined;
      const infos = archives
        ? opts.formats.map((f) => archives.data.archives.get(f) as ArchiveInfo)
        : [];
      if (archives) uploadArchives(session, infos);
      const setupSeconds = (archives?.seconds ?? 0) + (performance.now() - started) / 1000;

      const sections: SectionResult[] = [];
      const fetchDatasets = (["big", "small"] as const).filter((d) => has(d));
      if (fetchDatasets.length) {
        log(`bench: section ${fetchDatasets.join(" + ")}`);
        sections.push(await runFetchSection(session, opts, data, fetchDatasets));
      }
      if (archives) {
        log("bench: section archive");
        sections.push(await runArchiveSection(session, opts, infos));
      }
      if (has("warm")) {
        log("bench: section warm");
        sections.push(await runWarmSection(session, opts, data));
      }
      if (crowdObject) {
        log("bench: section crowd");
        sections.push(await runCrowdSection(session, opts, crowdObject));
      }

      const peers = opts.tools.filter((t) => t !== "dsfetch");
      const what = [
        data.big ? `one ${fmtBytes(data.big.size)} object in ${fmtBytes(opts.partSize)} parts` : "",
        data.small ? `${fmtCount(data.small.count)} objects of ${fmtBytes(data.small.size)}` : "",
        archives ? `archives of a ${fmtBytes(opts.archiveSize)} mixed tree` : "",
        crowdObject
          ? `one ${fmtBytes(crowdObject.size)} object for the ${opts.workers} workers`
          : "",
      ].filter(Boolean);
      const summary = [
        `## dsfetch vs ${peers.length ? peers.map((t) => (t === "aws" ? "the AWS CLI" : t)).join(", ") : "no peer"} (${opts.runs} run${opts.runs > 1 ? "s" : ""} each, median)`,
        "",
        renderSummaryTable(
          sections.flatMap((s) => s.summary),
          opts.tools,
        ),
        "",
        `Each cell: median wall time of ${opts.runs} run(s) (spawn to exit; several processes: first spawn to last exit) and peak RSS (GNU time${crowdObject ? `; ${opts.workers} workers: the sum over the processes` : ""}); dsfetch / peer < 1: dsfetch is faster. dsfetch verifies every byte (MD5 / multipart MD5) and syncs its tree before it exits; the peers do neither (see each section). Data: ${what.join(", ")}; random or generated here.`,
      ];
      return { sections, summary, setupSeconds };
    },
  );
}

if (import.meta.main) runMain(main);
