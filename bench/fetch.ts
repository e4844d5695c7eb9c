// Benchmark (not a test): dsfetch against s5cmd, the AWS CLI and rclone, downloading the same
// data from the same local S3 server (MinIO, via test/harness/s3-server.ts) in the same run.
// Also the "big" and "small" sections of bench/all.ts (`npm run bench`).
//
//   npx node bench/fetch.ts [--runs N] [--datasets big,small] [--tools dsfetch,s5cmd,aws,rclone]
//                           [--big-size 2Gi] [--part-size 8Mi] [--small-count 20000]
//                           [--small-size 16Ki] [--idle-wait SECONDS] [--ignore-other-bench]
//                           [--keep]
//
// Datasets (uploaded once per session, bench/session.ts):
//   big    one object of random bytes (big/big.bin), multipart-uploaded in --part-size parts
//          (default 8 MiB, the AWS CLI's and boto3's default multipart chunk size, so the
//          common ETag shape)
//   small  --small-count objects of --small-size random bytes under small/ (plain PUTs, 64 in
//          flight, signed here with SigV4 over keep-alive node:http)
// Each tool writes into a fresh directory under the bench directory ($DSFETCH_BENCH_DIR, else
// the OS temp dir, which is where MinIO keeps its data too: one filesystem). Outputs of the
// small dataset are kept until the end (see "Removing outputs" in bench/common.ts), the others
// removed; `sync` runs before every run, so no run inherits another's dirty pages. The page
// cache is NOT dropped: MinIO serves from memory (what a fast remote store looks like).
//
// Per tool: median wall time (spawn to exit, measured here), rate, user+sys CPU and peak RSS
// (GNU time `-f %M`: ru_maxrss of the tool's process, the largest of its process tree), the time
// of a `sync -f` of the output right after the tool exits (dsfetch makes its tree durable before
// it exits, the peers do not), and dsfetch/peer. A Markdown table goes to stdout, logs to stderr.

import { spawnSync } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  type BenchOptions,
  checkInterrupted,
  type DatasetName,
  DISTURBED_CORES,
  disposeOutput,
  type Flag,
  fmt,
  fmtBytes,
  fmtCount,
  IDLE_BUDGET_SECONDS,
  log,
  MiB,
  mdTable,
  measure,
  measureRepeating,
  parseDsfetch,
  parseOptions,
  REPEAT_MAX_SECONDS,
  type RunResult,
  runMain,
  SETTLE_SECONDS,
  type SectionResult,
  type SummaryRow,
  summarize,
  summaryCell,
  verificationText,
  wallText,
} from "./common.ts";
import {
  benchMain,
  checkObjectOutput,
  checkPrefixOutput,
  dsfetchProc,
  type ObjectInfo,
  type PrefixInfo,
  peerProc,
  RCLONE_STREAMS,
  type Session,
  type Source,
  type ToolSetup,
  toolEnv,
  toolLabel,
  uploadObject,
  uploadPrefix,
} from "./session.ts";

const SCRIPT = "bench/fetch.ts";
const FETCH_FLAGS: readonly Flag[] = [
  "--runs",
  "--datasets",
  "--tools",
  "--big-size",
  "--part-size",
  "--small-count",
  "--small-size",
  "--idle-wait",
  "--ignore-other-bench",
  "--keep",
];

/** The datasets, uploaded once per session. */
export interface FetchData {
  big?: ObjectInfo;
  small?: PrefixInfo;
}

export async function uploadFetchData(
  session: Session,
  opts: BenchOptions,
  which: readonly DatasetName[],
): Promise<FetchData> {
  const data: FetchData = {};
  if (which.includes("big"))
    data.big = await uploadObject(session, "big/big.bin", opts.bigSize, opts.partSize);
  if (which.includes("small"))
    data.small = await uploadPrefix(session, "small/", opts.smallCount, opts.smallSize);
  spawnSync("sync");
  return data;
}

export function sourceOf(dataset: DatasetName, data: FetchData): Source {
  if (dataset === "big") return { kind: "object", key: data.big?.key ?? "big/big.bin" };
  return { kind: "prefix", prefix: data.small?.prefix ?? "small/" };
}

export function datasetLabel(dataset: DatasetName, data: FetchData): string {
  if (dataset === "big") {
    const b = data.big;
    return b ? `1 × ${fmtBytes(b.size)} (${b.parts} parts of ${fmtBytes(b.partSize)})` : "big";
  }
  const s = data.small;
  return s ? `${fmtCount(s.count)} × ${fmtBytes(s.size)}` : "small";
}

/** Undefined when `dir` holds the dataset right; else what is wrong. `deep` also compares MD5s. */
export function checkDataset(
  dataset: DatasetName,
  dir: string,
  data: FetchData,
  deep: boolean,
): string | undefined {
  if (dataset === "big" && data.big) return checkObjectOutput(dir, data.big, deep);
  if (dataset === "small" && data.small) return checkPrefixOutput(dir, data.small, deep);
  return "dataset not uploaded";
}

/** Files in the dataset (outputs with many files are kept until the end: bench/common.ts). */
export function fileCount(dataset: DatasetName, data: FetchData): number {
  return dataset === "small" ? (data.small?.count ?? 0) : 1;
}

interface Row {
  dataset: DatasetName;
  tool: ToolSetup;
  runs: RunResult[];
  problems: string[];
  integrity: string;
  /** Runs repeated because other processes used the CPUs meanwhile. */
  repeated: number;
}

/** The "big" and "small" sections: every tool downloads each dataset `opts.runs` times. */
export async function runFetchSection(
  session: Session,
  opts: BenchOptions,
  data: FetchData,
  datasets: readonly DatasetName[],
): Promise<SectionResult> {
  const tools = opts.tools
    .map((t) => session.tools.get(t))
    .filter((t): t is ToolSetup => t !== undefined);
  const rows: Row[] = [];
  for (const dataset of datasets) {
    const dsRows = tools.map((tool) => {
      const row: Row = { dataset, tool, runs: [], problems: [], integrity: "", repeated: 0 };
      rows.push(row);
      return row;
    });
    for (let run = 0; run < opts.runs; run++) {
      // Rotate the order each run so no tool always goes first (or right after another).
      const order = dsRows.map((_, i) => dsRows[(i + run) % dsRows.length] as Row);
      for (const row of order) {
        checkInterrupted();
        if (!row.tool.peer.ok) continue;
        const name = row.tool.name;
        let outDir = "";
        const { result: r, repeated } = await measureRepeating(
          `${dataset} ${name} run ${run + 1}`,
          async (attempt) => {
            if (outDir) await disposeOutput(outDir, fileCount(dataset, data));
            outDir = join(session.benchDir, `out-${dataset}-${name}-${run + 1}-${attempt}`);
            await mkdir(outDir, { recursive: true });
            const source = sourceOf(dataset, data);
            const proc =
              name === "dsfetch"
                ? dsfetchProc(session, source, outDir)
                : peerProc(session, name, source, outDir, "copy");
            return measure([{ name: "fetch", procs: [proc] }], {
              logBase: join(session.benchDir, `log-${dataset}-${name}-${run + 1}`),
              syncPath: outDir,
              idleWait: opts.idleWait,
              counters: session.counters,
              // One large object: every tool starts with cold memory (see SETTLE_SECONDS).
              settleSeconds: dataset === "big" ? SETTLE_SECONDS : 0,
            });
          },
        );
        if (repeated) row.repeated++;
        if (r.ok) {
          r.check = checkDataset(dataset, outDir, data, run === 0);
          if (r.check) row.problems.push(`run ${run + 1}: output wrong: ${r.check}`);
        } else {
          row.problems.push(`run ${run + 1}: ${r.failure}`);
        }
        if (name === "dsfetch" && r.ok) {
          const j = parseDsfetch(r.procs[0]?.stdout ?? "");
          if (j) {
            row.integrity = verificationText(j);
            if (j.retries || j.refetchedBytes)
              row.problems.push(
                `run ${run + 1}: ${j.retries} retries, ${j.refetchedBytes} bytes refetched`,
              );
          } else {
            row.problems.push(
              `run ${run + 1}: --json output not understood: ${r.procs[0]?.stdout.slice(0, 200)}`,
            );
          }
        }
        log(
          `bench: ${dataset} ${name} run ${run + 1}/${opts.runs}: ${r.ok ? "ok" : `FAILED (${r.failure})`} ${fmt(r.wallSeconds)}s, sync after ${fmt(r.syncSeconds)}s, CPU ${fmt(r.cpuSeconds, 1)}s, peak RSS ${fmt(r.peakRssMiB, 0)} MiB, other processes ${fmt(r.otherCores)} cores${r.check ? `; OUTPUT WRONG: ${r.check}` : r.ok ? (run === 0 ? "; output MD5s match" : "; output sizes match") : ""}`,
        );
        row.runs.push(r);
        await disposeOutput(outDir, fileCount(dataset, data));
      }
    }
    for (const row of dsRows) {
      if (!row.tool.peer.ok) continue;
      if (row.tool.name === "s5cmd") row.integrity = "none (s5cmd does not verify downloads)";
      if (row.tool.name === "aws")
        row.integrity = "none (no MD5 check on download; objects carry no flexible checksum)";
      if (row.tool.name === "rclone")
        row.integrity = rcloneHashProbe(session, row.tool, dataset, data);
    }
  }

  const summary: SummaryRow[] = datasets.map((dataset) => {
    const cells: SummaryRow["cells"] = {};
    for (const row of rows.filter((r) => r.dataset === dataset)) {
      const cell = summaryCell(summarize(row.runs));
      if (cell) cells[row.tool.name] = cell;
    }
    return {
      scenario:
        dataset === "big"
          ? `${datasetLabel(dataset, data)}, one object`
          : `${datasetLabel(dataset, data)} objects`,
      cells,
    };
  });
  const markdown = [
    `### Downloads: dsfetch fetch vs peers (${opts.runs} run${opts.runs > 1 ? "s" : ""} each, median)`,
    "",
    renderTable(rows, data, datasets),
    "",
    `Wall = spawn to exit; start-up = median wall of the tool's version command (5 runs); other load = median CPU used by processes other than the tool, MinIO and the bench during a run, in cores (a run under ${REPEAT_MAX_SECONDS} s above ${DISTURBED_CORES} is repeated once; before each run the bench waits up to ${opts.idleWait} s, ${IDLE_BUDGET_SECONDS} s in all, for the machine to be idle); "sync after" = \`sync -f\` of the output right after exit (dsfetch syncs before it exits; the peers leave dirty pages); CPU = user+sys and peak RSS = ru_maxrss, from GNU time \`-f "%M %U %S"\`. dsfetch/peer < 1: dsfetch is faster. Page cache not dropped: MinIO serves from memory; each tool writes a fresh directory on the same filesystem. One large object: each run starts at least ${SETTLE_SECONDS} s after the previous output was removed, so that every tool writes into memory the VM has given back to its host (free page reporting; see SETTLE_SECONDS in bench/common.ts). The bench checks every output (MD5 of every file in run 1, sizes after).`,
  ].join("\n");
  return {
    markdown,
    summary,
    failed: rows.some((r) => r.problems.length > 0 || r.runs.some((x) => !x.ok)),
  };
}

/**
 * Does rclone check a hash on this dataset? One untimed `rclone copy -vv` of one object, and
 * its debug log is read: rclone logs "md5 = … OK" when it compared, and says so when it could
 * not (a multipart ETag is not an MD5, so there is nothing to compare with).
 */
function rcloneHashProbe(
  session: Session,
  tool: ToolSetup,
  dataset: DatasetName,
  data: FetchData,
): string {
  if (!tool.peer.ok) return "";
  const out = join(session.benchDir, `rclone-probe-${dataset}`);
  const key =
    dataset === "big"
      ? (data.big?.key ?? "big/big.bin")
      : `${data.small?.prefix ?? "small/"}${[...(data.small?.md5.keys() ?? [])][0]}`;
  const r = spawnSync(
    tool.peer.path,
    [
      "copy",
      `bench:${session.bucket}/${key}`,
      out,
      "-vv",
      "--multi-thread-streams",
      String(RCLONE_STREAMS),
    ],
    { env: toolEnv(session, "rclone"), encoding: "utf8", maxBuffer: 64 * MiB },
  );
  spawnSync("rm", ["-rf", out]);
  const text = `${r.stdout}\n${r.stderr}`;
  const okLine = text.split("\n").find((l) => /md5 = [0-9a-f]{32} OK/.test(l));
  if (okLine) return "md5 checked against the ETag";
  const why = text.split("\n").find((l) => /hash|checksum/i.test(l) && !/--/.test(l));
  return `no hash checked${
    why
      ? ` (${why
          .replace(/^.*?(DEBUG|INFO|NOTICE) ?: ?/, "")
          .trim()
          .slice(0, 120)})`
      : ""
  }`;
}

function renderTable(rows: Row[], data: FetchData, datasets: readonly DatasetName[]): string {
  const header = [
    "dataset",
    "tool",
    "median wall s (min-max)",
    "rate",
    "CPU s",
    "peak RSS MiB",
    "sync after s",
    "dsfetch/peer",
    "dsfetch/peer incl. sync",
    "start-up s",
    "other load, cores",
    "end-to-end check by the tool",
  ];
  const lines: string[][] = [];
  for (const dataset of datasets) {
    const ds = rows.filter((r) => r.dataset === dataset);
    const mine = summarize(ds.find((r) => r.tool.name === "dsfetch")?.runs ?? []);
    const label = datasetLabel(dataset, data);
    for (const row of ds) {
      const name = toolLabel(row.tool);
      const blank = (text: string): string[] => [
        label,
        name,
        text,
        ...Array<string>(header.length - 3).fill(""),
      ];
      if (!row.tool.peer.ok) {
        lines.push(blank(`unavailable: ${row.tool.peer.reason}`));
        continue;
      }
      const s = summarize(row.runs);
      if (!s) {
        lines.push(
          blank(`failed ${row.runs.length}/${row.runs.length}: ${row.problems[0] ?? "?"}`),
        );
        continue;
      }
      const rate =
        dataset === "big"
          ? `${fmt((data.big?.size ?? 0) / MiB / s.wall, 0)} MiB/s`
          : `${fmt((data.small?.count ?? 0) / s.wall, 0)} obj/s`;
      const isMine = row.tool.name === "dsfetch";
      const failed = row.runs.filter((r) => !r.ok || r.check !== undefined).length;
      const problems = [
        ...(failed ? [`${failed} of ${row.runs.length} runs failed or wrong`] : []),
        ...row.problems,
      ];
      lines.push([
        label,
        name,
        wallText(s),
        rate,
        fmt(s.cpu, 1),
        fmt(s.rss, 0),
        fmt(s.sync),
        isMine || !mine ? "-" : fmt(mine.wall / s.wall),
        isMine || !mine ? "-" : fmt(mine.durable / s.durable),
        fmt(row.tool.startupSeconds),
        `${fmt(s.other)}${row.repeated ? ` (${row.repeated} repeated)` : ""}${row.runs.some((r) => r.startedBusy) ? " (busy)" : ""}`,
        `${row.integrity}${problems.length ? `; **${problems.join("; ")}**` : ""}`,
      ]);
    }
  }
  return mdTable(header, lines);
}

// ---------------------------------------------------------------------------------------------
// Main (this script on its own)

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv, SCRIPT, FETCH_FLAGS);
  const p = { script: SCRIPT, npmScript: "bench:fetch", argv, opts, prefix: "dsfetch-bench" };
  return benchMain(
    { ...p, tools: opts.tools },
    async () => undefined,
    async (session) => {
      const started = performance.now();
      const data = await uploadFetchData(session, opts, opts.datasets);
      const setupSeconds = (performance.now() - started) / 1000;
      return {
        sections: [await runFetchSection(session, opts, data, opts.datasets)],
        setupSeconds,
      };
    },
  );
}

if (import.meta.main) runMain(main);
