// Benchmark (not a test) of the two situations dsfetch exists for beyond a plain download, against
// what users do without it, from the same local S3 server (MinIO) in the same run. Also the "warm"
// and "crowd" sections of bench/all.ts (`npm run bench`).
//
//   npx node bench/scenarios.ts [--sections warm,crowd] [--runs N] [--tools dsfetch,s5cmd,aws,rclone]
//                               [--warm big,small] [--big-size 2Gi] [--part-size 8Mi]
//                               [--small-count 20000] [--small-size 16Ki] [--workers 16]
//                               [--crowd-size 1Gi] [--idle-wait SECONDS] [--ignore-other-bench]
//                               [--keep]
//
// warm   The dataset is already there. Each tool fetches it once (untimed but reported: "first
//        fetch"), then fetches it again --runs times into the same place: dsfetch `fetch` into
//        the same storage root (a HEAD or a listing compared with its manifest, no download);
//        the peers' "only what changed" commands on their own complete copy: `s5cmd sync`,
//        `aws s3 sync`, `rclone copy` (which skips files whose size and time match). Datasets:
//        the big object and the small-object prefix of bench/fetch.ts (--warm big,small). The
//        S3 server's counters say what each run asked for and how many bytes it was sent, so a
//        tool that downloads again shows.
// crowd  --workers processes (default 16) started at once for one object (--crowd-size,
//        default 1 GiB, crowd/crowd.bin): dsfetch `fetch` with one shared storage root (one
//        downloads, the others wait for its lock and reuse the published dataset), against each
//        peer run --workers times at once, each into its own directory (what jobs do without a
//        shared cache), and against one process of dsfetch and of s5cmd alone (one download).
//        Wall = first spawn to last exit; RSS = the sum of the processes' peak RSS; bytes
//        served from the S3 server's counters; dsfetch's --json says which worker downloaded.
// Outputs live under the bench directory (on the filesystem of MinIO's data); a Markdown table per
// section goes to stdout, logs to stderr.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  type BenchOptions,
  checkInterrupted,
  type DatasetName,
  disposeOutput,
  type Flag,
  fmt,
  fmtAmount,
  fmtBytes,
  log,
  mdTable,
  measure,
  measureRepeating,
  type Proc,
  parseDsfetch,
  parseOptions,
  type RunResult,
  runMain,
  type SectionResult,
  type SummaryRow,
  summarize,
  summaryCell,
  type ToolName,
  UsageError,
  wallText,
} from "./common.ts";
import {
  checkDataset,
  datasetLabel,
  type FetchData,
  fileCount,
  sourceOf,
  uploadFetchData,
} from "./fetch.ts";
import {
  benchMain,
  checkObjectOutput,
  dsfetchProc,
  type ObjectInfo,
  peerProc,
  procText,
  requestsText,
  type Session,
  type ToolSetup,
  toolLabel,
  uploadObject,
} from "./session.ts";

const SCRIPT = "bench/scenarios.ts";
const SCENARIO_FLAGS: readonly Flag[] = [
  "--sections",
  "--runs",
  "--tools",
  "--warm",
  "--big-size",
  "--part-size",
  "--small-count",
  "--small-size",
  "--workers",
  "--crowd-size",
  "--idle-wait",
  "--ignore-other-bench",
  "--keep",
];

function availableTools(session: Session, opts: BenchOptions): ToolSetup[] {
  return opts.tools.map((t) => session.tools.get(t)).filter((t): t is ToolSetup => t !== undefined);
}

function unavailableRow(tool: ToolSetup, width: number, first: string[]): string[] {
  const reason = tool.peer.ok ? "not run" : `unavailable: ${tool.peer.reason}`;
  return [...first, reason, ...Array<string>(width - first.length - 1).fill("")];
}

// ---------------------------------------------------------------------------------------------
// Warm cache

interface WarmRow {
  dataset: DatasetName;
  tool: ToolSetup;
  proc: Proc | undefined;
  dir: string;
  first: RunResult | undefined;
  runs: RunResult[];
  problems: string[];
  repeated: number;
}

/** A run of a warm fetch that was sent more than this share of the dataset downloaded again. */
const REDOWNLOAD_SHARE = 0.5;

export async function runWarmSection(
  session: Session,
  opts: BenchOptions,
  data: FetchData,
): Promise<SectionResult> {
  const datasets = opts.warm.filter((d) => (d === "big" ? data.big : data.small) !== undefined);
  const rows: WarmRow[] = [];
  for (const dataset of datasets) {
    const dsRows: WarmRow[] = [];
    const bytes =
      dataset === "big"
        ? (data.big?.size ?? 0)
        : (data.small?.count ?? 0) * (data.small?.size ?? 0);
    for (const tool of availableTools(session, opts)) {
      const dir = join(session.benchDir, `warm-${dataset}-${tool.name}`);
      const row: WarmRow = {
        dataset,
        tool,
        proc: undefined,
        dir,
        first: undefined,
        runs: [],
        problems: [],
        repeated: 0,
      };
      rows.push(row);
      dsRows.push(row);
      if (!tool.peer.ok) continue;
      await mkdir(dir, { recursive: true });
      const source = sourceOf(dataset, data);
      row.proc =
        tool.name === "dsfetch"
          ? dsfetchProc(session, source, dir)
          : peerProc(session, tool.name, source, dir, "sync");
      // The first fetch makes the copy the tool will find (untimed for the table's median).
      const first = await measure([{ name: "first", procs: [row.proc] }], {
        logBase: join(session.benchDir, `log-warm-${dataset}-${tool.name}-first`),
        syncPath: dir,
        idleWait: 0,
        counters: session.counters,
      });
      row.first = first;
      const check = first.ok ? checkDataset(dataset, dir, data, true) : first.failure;
      log(
        `bench: warm ${dataset} ${tool.name}: first fetch ${first.ok ? "ok" : "FAILED"} ${fmt(first.wallSeconds)}s${check ? `; ${check}` : "; output MD5s match"}`,
      );
      if (check) {
        row.problems.push(`first fetch: ${check}`);
        row.proc = undefined;
      }
    }
    for (let run = 0; run < opts.runs; run++) {
      const order = dsRows.map((_, i) => dsRows[(i + run) % dsRows.length] as WarmRow);
      for (const row of order) {
        checkInterrupted();
        const proc = row.proc;
        if (!proc) continue;
        const name = row.tool.name;
        const { result: r, repeated } = await measureRepeating(
          `warm ${dataset} ${name} run ${run + 1}`,
          () =>
            measure([{ name: "again", procs: [proc] }], {
              logBase: join(session.benchDir, `log-warm-${dataset}-${name}-${run + 1}`),
              syncPath: row.dir,
              idleWait: opts.idleWait,
              counters: session.counters,
            }),
        );
        if (repeated) row.repeated++;
        if (r.ok) {
          r.check = checkDataset(dataset, row.dir, data, run === 0);
          if (r.check) row.problems.push(`run ${run + 1}: output wrong: ${r.check}`);
          if (name === "dsfetch") {
            const j = parseDsfetch(r.procs[0]?.stdout ?? "");
            if (j?.cached !== true)
              row.problems.push(
                `run ${run + 1}: dsfetch did not reuse the staged dataset (--json cached: ${j?.cached})`,
              );
          }
          const sent = r.served?.sentBytes;
          if (sent !== undefined && sent > REDOWNLOAD_SHARE * bytes)
            row.problems.push(`run ${run + 1}: downloaded again (${fmtAmount(sent)} sent)`);
        } else {
          row.problems.push(`run ${run + 1}: ${r.failure}`);
        }
        log(
          `bench: warm ${dataset} ${name} run ${run + 1}/${opts.runs}: ${r.ok ? "ok" : `FAILED (${r.failure})`} ${fmt(r.wallSeconds)}s, CPU ${fmt(r.cpuSeconds, 1)}s, peak RSS ${fmt(r.peakRssMiB, 0)} MiB, served ${fmtAmount(r.served?.sentBytes)} (${requestsText(r.served?.requests)}), other ${fmt(r.otherCores)} cores${r.check ? `; OUTPUT WRONG: ${r.check}` : ""}`,
        );
        row.runs.push(r);
      }
    }
    for (const row of dsRows) await disposeOutput(row.dir, fileCount(dataset, data));
  }

  const header = [
    "dataset (already there)",
    "tool",
    "command",
    "first fetch s",
    "median wall s (min-max)",
    "CPU s",
    "peak RSS MiB",
    "S3 requests per run",
    "bytes sent per run",
    "dsfetch/peer",
    "start-up s",
    "other load, cores",
    "notes",
  ];
  const lines: string[][] = [];
  for (const dataset of datasets) {
    const ds = rows.filter((r) => r.dataset === dataset);
    const mine = summarize(ds.find((r) => r.tool.name === "dsfetch")?.runs ?? []);
    const label = datasetLabel(dataset, data);
    for (const row of ds) {
      const s = summarize(row.runs);
      if (!row.tool.peer.ok || !s) {
        const line = unavailableRow(row.tool, header.length, [label, toolLabel(row.tool)]);
        if (row.tool.peer.ok) line[2] = `failed: ${row.problems.join("; ")}`;
        lines.push(line);
        continue;
      }
      const notes = row.problems.length ? [`**${row.problems.join("; ")}**`] : [];
      if (row.repeated)
        notes.push(`${row.repeated} run(s) repeated: other processes used the CPUs`);
      lines.push([
        label,
        toolLabel(row.tool),
        row.proc ? procText(session, row.proc) : "",
        fmt(row.first?.wallSeconds),
        wallText(s),
        fmt(s.cpu, 2),
        fmt(s.rss, 0),
        requestsText(s.requests),
        fmtAmount(s.sentBytes),
        row.tool.name === "dsfetch" || !mine ? "-" : fmt(mine.wall / s.wall),
        fmt(row.tool.startupSeconds),
        `${fmt(s.other)}${row.runs.some((r) => r.startedBusy) ? " (busy)" : ""}`,
        notes.join("; "),
      ]);
    }
  }
  const summary: SummaryRow[] = datasets.map((dataset) => {
    const cells: SummaryRow["cells"] = {};
    for (const row of rows.filter((r) => r.dataset === dataset)) {
      const what = row.tool.name === "dsfetch" ? undefined : warmVerb(row.tool.name);
      const c = summaryCell(summarize(row.runs), what);
      if (c) cells[row.tool.name] = c;
    }
    return {
      scenario: `warm cache: ${datasetLabel(dataset, data)}${dataset === "big" ? ", one object" : " objects"}, already staged`,
      cells,
      note: "dsfetch: manifest vs HEAD/listing; peers: their sync on a complete copy",
    };
  });
  const markdown = [
    `### Warm cache: fetching a dataset that is already there (${opts.runs} run${opts.runs > 1 ? "s" : ""} each, median)`,
    "",
    mdTable(header, lines),
    "",
    `Each tool first fetches the dataset into its own directory ("first fetch", a cold download by the same command), then runs the same command again ${opts.runs} time(s): dsfetch \`fetch\` into the same storage root (it finds the published dataset and compares its manifest with a HEAD of the object, or with a listing of the prefix: no download, no lock); s5cmd \`sync\` and \`aws s3 sync\` (size and modification time), \`rclone copy\` (size and modification time, skips unchanged files) on the complete copy they made. "S3 requests" and "bytes sent" are the S3 server's counters over one run (response bodies: listings, or data sent again); a run sent more than ${REDOWNLOAD_SHARE * 100}% of the dataset is flagged as a download. Wall = spawn to exit; CPU and peak RSS from GNU time; dsfetch/peer < 1: dsfetch is faster. The page cache is warm (the files were just written).`,
  ].join("\n");
  return {
    markdown,
    summary,
    failed: rows.some((r) => r.problems.length > 0 || r.runs.some((x) => !x.ok)),
  };
}

function warmVerb(tool: ToolName): string {
  return tool === "s5cmd" ? "sync" : tool === "aws" ? "s3 sync" : "copy";
}

// ---------------------------------------------------------------------------------------------
// Many workers at once on one dataset

export async function uploadCrowdObject(session: Session, opts: BenchOptions): Promise<ObjectInfo> {
  return uploadObject(session, "crowd/crowd.bin", opts.crowdSize, opts.partSize);
}

interface CrowdJob {
  tool: ToolSetup;
  workers: number;
  label: string;
  /** A reference row (one process): not a contender. */
  reference: boolean;
}

interface CrowdRow {
  job: CrowdJob;
  runs: RunResult[];
  problems: string[];
  repeated: number;
  /** dsfetch: how many workers downloaded (--json cached: false), per good run. */
  downloads: number[];
}

export async function runCrowdSection(
  session: Session,
  opts: BenchOptions,
  object: ObjectInfo,
): Promise<SectionResult> {
  const n = opts.workers;
  const source = { kind: "object", key: object.key } as const;
  const jobs: CrowdJob[] = [];
  for (const tool of availableTools(session, opts)) {
    jobs.push({
      tool,
      workers: n,
      reference: false,
      label:
        tool.name === "dsfetch"
          ? `${n} × dsfetch fetch, one storage root`
          : `${n} × ${tool.name === "aws" ? "aws s3 cp" : `${tool.name} ${tool.name === "rclone" ? "copy" : "cp"}`}, own directories`,
    });
  }
  for (const tool of availableTools(session, opts)) {
    if (tool.name !== "dsfetch" && tool.name !== "s5cmd") continue;
    jobs.push({
      tool,
      workers: 1,
      reference: true,
      label: `1 × ${tool.name === "dsfetch" ? "dsfetch fetch" : "s5cmd cp"} (one download)`,
    });
  }
  const rows: CrowdRow[] = jobs.map((job) => ({
    job,
    runs: [],
    problems: [],
    repeated: 0,
    downloads: [],
  }));
  for (let run = 0; run < opts.runs; run++) {
    const order = rows.map((_, i) => rows[(i + run) % rows.length] as CrowdRow);
    for (const row of order) {
      checkInterrupted();
      const { tool, workers } = row.job;
      if (!tool.peer.ok) continue;
      const tag = `crowd-${tool.name}-${workers}-${run + 1}`;
      let outDir = "";
      const dirOf = (i: number): string =>
        tool.name === "dsfetch" ? outDir : join(outDir, `w${i}`);
      const { result: r, repeated } = await measureRepeating(
        `${row.job.label} run ${run + 1}`,
        async (attempt) => {
          if (outDir) await disposeOutput(outDir, workers);
          outDir = join(session.benchDir, `out-${tag}-${attempt}`);
          const procs: Proc[] = [];
          for (let i = 0; i < workers; i++) {
            await mkdir(dirOf(i), { recursive: true });
            procs.push(
              tool.name === "dsfetch"
                ? dsfetchProc(session, source, outDir)
                : peerProc(session, tool.name, source, dirOf(i), "copy"),
            );
          }
          return measure([{ name: "workers", procs }], {
            logBase: join(session.benchDir, `log-${tag}`),
            syncPath: outDir,
            idleWait: opts.idleWait,
            counters: session.counters,
          });
        },
      );
      if (repeated) row.repeated++;
      if (r.ok) {
        const deep = run === 0;
        if (tool.name === "dsfetch") {
          const outs = r.procs.map((p) => parseDsfetch(p.stdout));
          const paths = new Set(outs.map((j) => j?.path));
          const downloads = outs.filter((j) => j?.cached === false).length;
          row.downloads.push(downloads);
          const path = outs[0]?.path;
          if (outs.some((j) => !j?.path) || paths.size !== 1 || !path)
            r.check = `--json output not understood or paths differ: ${[...paths].join(", ")}`;
          else r.check = checkObjectOutput(path, object, deep);
          if (downloads !== 1)
            row.problems.push(`run ${run + 1}: ${downloads} of ${workers} workers downloaded`);
        } else {
          for (let i = 0; i < workers && !r.check; i++) {
            const c = checkObjectOutput(dirOf(i), object, deep && i === 0);
            if (c) r.check = `worker ${i + 1}: ${c}`;
          }
        }
        if (r.check) row.problems.push(`run ${run + 1}: output wrong: ${r.check}`);
      } else {
        row.problems.push(`run ${run + 1}: ${r.failure}`);
      }
      const exits = r.procs.map((p) => p.exitAtSeconds);
      log(
        `bench: ${row.job.label} run ${run + 1}/${opts.runs}: ${r.ok ? "ok" : `FAILED (${r.failure})`} ${fmt(r.wallSeconds)}s (exits ${fmt(Math.min(...exits))}-${fmt(Math.max(...exits))}s), sync after ${fmt(r.syncSeconds)}s, CPU ${fmt(r.cpuSeconds, 1)}s, RSS Σ ${fmt(r.rssSumMiB, 0)} MiB (max ${fmt(r.peakRssMiB, 0)}), served ${fmtAmount(r.served?.sentBytes)} (${fmt((r.served?.sentBytes ?? Number.NaN) / object.size)}× the object), other ${fmt(r.otherCores)} cores${tool.name === "dsfetch" && r.ok ? `, ${row.downloads.at(-1)} download(s)` : ""}${r.check ? `; OUTPUT WRONG: ${r.check}` : ""}`,
      );
      row.runs.push(r);
      await disposeOutput(outDir, workers);
    }
  }

  const mine = summarize(
    rows.find((r) => r.job.tool.name === "dsfetch" && !r.job.reference)?.runs ?? [],
  );
  const header = [
    "command",
    "median wall s until all exit (min-max)",
    "first exit s",
    "CPU s, all",
    "Σ peak RSS MiB",
    "largest peak RSS MiB",
    "bytes sent (× object)",
    "downloads",
    "sync after s",
    "dsfetch/this",
    "dsfetch/this incl. sync",
    "other load, cores",
    "notes",
  ];
  const lines: string[][] = [];
  for (const row of rows) {
    const s = summarize(row.runs);
    if (!row.job.tool.peer.ok || !s) {
      const line = unavailableRow(row.job.tool, header.length, [row.job.label]);
      if (row.job.tool.peer.ok) line[1] = `failed: ${row.problems.join("; ")}`;
      lines.push(line);
      continue;
    }
    const isMine = row.job.tool.name === "dsfetch" && !row.job.reference;
    const notes = row.problems.length ? [`**${row.problems.join("; ")}**`] : [];
    if (row.repeated) notes.push(`${row.repeated} run(s) repeated: other processes used the CPUs`);
    const downloads =
      row.job.tool.name === "dsfetch"
        ? `${Math.max(...row.downloads)} of ${row.job.workers}`
        : `${row.job.workers} of ${row.job.workers}`;
    lines.push([
      row.job.label,
      wallText(s),
      fmt(s.firstExit),
      fmt(s.cpu, 1),
      fmt(s.rssSum, 0),
      fmt(s.rss, 0),
      `${fmtAmount(s.sentBytes)} (${fmt(s.sentBytes / object.size)}×)`,
      downloads,
      fmt(s.sync),
      isMine || !mine ? "-" : fmt(mine.wall / s.wall),
      isMine || !mine ? "-" : fmt(mine.durable / s.durable),
      `${fmt(s.other)}${row.runs.some((r) => r.startedBusy) ? " (busy)" : ""}`,
      notes.join("; "),
    ]);
  }
  const cells: SummaryRow["cells"] = {};
  let reference: SummaryRow["reference"];
  for (const row of rows) {
    const s = summarize(row.runs);
    if (!s) continue;
    if (!row.job.reference) {
      const c = summaryCell(s, undefined, true);
      if (c) cells[row.job.tool.name] = c;
    } else if (row.job.tool.name === "s5cmd") {
      reference = { seconds: s.wall, rssMiB: s.rss, what: "one s5cmd cp" };
    }
  }
  const summaryRow: SummaryRow = {
    scenario: `${n} workers at once, one ${fmtBytes(object.size)} object`,
    cells,
    note: `dsfetch: one download, ${n - 1} wait and reuse; peers: ${n} downloads; RSS = Σ of ${n} processes`,
  };
  if (reference) summaryRow.reference = reference;
  const markdown = [
    `### ${n} workers on one dataset (one ${fmtBytes(object.size)} object, ${object.parts} parts of ${fmtBytes(object.partSize)}; ${opts.runs} run${opts.runs > 1 ? "s" : ""} each, median)`,
    "",
    mdTable(header, lines),
    "",
    `${n} processes started at once (spawned in a loop, each under GNU time). dsfetch: \`dsfetch fetch\` with the same datasets array and storage root (what ${n} workers of one job do with shared storage): one takes the dataset's lock and downloads, the others wait (polling every DSFETCH_LOCK_POLL = 1 s by default) and reuse the published dataset; "downloads" counts the workers whose --json says \`cached: false\`. Peers: each process downloads into its own directory (what ${n} workers do without a shared cache). Wall = first spawn to last exit; first exit = when the first process exited; CPU = user+sys of all ${n}; Σ peak RSS = the sum of their ru_maxrss; bytes sent = the S3 server's counter over the run. "sync after" = \`sync -f\` of the outputs right after the last exit (dsfetch syncs before it publishes; ${n} peer copies leave ${n} × the object of dirty pages).`,
  ].join("\n");
  return {
    markdown,
    summary: [summaryRow],
    failed: rows.some((r) => r.problems.length > 0 || r.runs.some((x) => !x.ok)),
  };
}

// ---------------------------------------------------------------------------------------------
// Main (this script on its own)

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv, SCRIPT, SCENARIO_FLAGS, { sections: ["warm", "crowd"] });
  const unknown = opts.sections.filter((s) => s !== "warm" && s !== "crowd");
  if (unknown.length)
    throw new UsageError(`${SCRIPT} runs the warm and crowd sections, not ${unknown.join(",")}`);
  const p = { script: SCRIPT, npmScript: "bench:scenarios", argv, opts };
  return benchMain(
    { ...p, prefix: "dsfetch-scenarios-bench", tools: opts.tools },
    async () => undefined,
    async (session) => {
      const sections: SectionResult[] = [];
      if (opts.sections.includes("warm")) {
        const data = await uploadFetchData(session, opts, opts.warm);
        sections.push(await runWarmSection(session, opts, data));
      }
      if (opts.sections.includes("crowd")) {
        const object = await uploadCrowdObject(session, opts);
        sections.push(await runCrowdSection(session, opts, object));
      }
      return { sections };
    },
  );
}

if (import.meta.main) runMain(main);
