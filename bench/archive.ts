// Benchmark (not a test) of archive datasets (issue 5): dsfetch's streaming expansion against
// downloading the archive with each peer (s5cmd, the AWS CLI, rclone) and then extracting it
// with the usual tools, and against the decompressor alone on a local copy (the limit), from
// the same local S3 server (MinIO, via test/harness/s3-server.ts) in the same run. Also the
// "archive" section of bench/all.ts (`npm run bench`).
//
//   npx node bench/archive.ts [--runs N] [--formats gz,xz,bz2,zip,tar] [--archive-size 1Gi]
//                             [--bz2-size 256Mi] [--small-count 20000] [--small-size 16Ki]
//                             [--xz-level 1] [--tools dsfetch,s5cmd,aws,rclone]
//                             [--idle-wait SECONDS] [--profile] [--regenerate]
//                             [--ignore-other-bench] [--keep]
//
// Archives (bench/archive-data.ts; generated once, cached under $DSFETCH_BENCH_DIR or the OS
// temp dir): a 1 GiB mix of CSV, JSON lines, logs, float arrays and random bytes as .tar.gz,
// .tar.xz (multi-block, `xz -T0`), .zip and, smaller, .tar.bz2; 20,000 files of ~16 KiB as .tar.
// For each archive, in every run (the order rotates from run to run):
//   dsfetch         `node bin/dsfetch.js fetch --datasets - --storage-root <fresh> --team bench
//                   --json`, stdin [{"uri":"s3://<bucket>/<key>"}]: fetch + streaming expansion +
//                   verification + syncfs + publish
//   dsfetch, plain  the same bytes under a key without an archive extension: dsfetch's download
//                   alone (ranged GETs, MD5, syncfs, publish), to split dsfetch's time
//   d-t-e           download then extract, one row per peer: `s5cmd cp`, `aws s3 cp` or
//                   `rclone copy` of the object to a file, then the usual extraction (tar -xzf,
//                   xz -dc -T0 | tar -x, lbzip2 -dc | tar -x, unzip -q, tar -xf), then `rm` of
//                   the archive (dsfetch keeps no archive either)
//   limit           the decompressor alone on the cached local file, output to /dev/null (gzip
//                   -dc, pigz -dc, xz -dc -T0, pixz -d, lbzip2 -dc; the fastest is the limit);
//                   for .zip and .tar, `unzip -q` and
//                   `tar -xf` of the local file into a fresh directory
// Every command writes into a fresh directory on the filesystem of MinIO's data; outputs with
// many files are kept until the end (see "Removing outputs" in bench/common.ts), the others
// removed; `sync` runs before every run. The page cache is not dropped (MinIO serves from
// memory). A Markdown table goes to stdout, logs to stderr.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type ArchiveInfo,
  type DataOptions,
  dataRoot,
  type Format,
  type PreparedData,
  parametersKey,
  prepareArchives,
  readManifest,
} from "./archive-data.ts";
import {
  ALL_FORMATS,
  type BenchOptions,
  checkInterrupted,
  DISTURBED_CORES,
  disposeOutput,
  extractLocalEntry,
  type Flag,
  fmt,
  listFiles,
  log,
  MiB,
  md,
  md5File,
  measure,
  measureRepeating,
  median,
  type PeerName,
  parseDsfetch,
  parseOptions,
  type RunResult,
  repoRoot,
  runMain,
  type SectionResult,
  type Step,
  type Summary,
  type SummaryRow,
  summarize,
  summaryCell,
  verificationText,
} from "./common.ts";
import { which } from "./peers.ts";
import {
  baseEnv,
  benchMain,
  dsfetchProc,
  peerProc,
  type Session,
  toolPath,
  uploadFile,
} from "./session.ts";

const SCRIPT = "bench/archive.ts";
/** dsfetch's extraction alone, from a local file (the "dsfetch-local" rows). */
const EXTRACT_LOCAL = extractLocalEntry;
const ARCHIVE_FLAGS: readonly Flag[] = [
  "--runs",
  "--formats",
  "--archive-size",
  "--size",
  "--bz2-size",
  "--small-count",
  "--small-size",
  "--xz-level",
  "--tools",
  "--idle-wait",
  "--profile",
  "--regenerate",
  "--ignore-other-bench",
  "--keep",
];

const PEERS: readonly PeerName[] = ["s5cmd", "aws", "rclone"];

// ---------------------------------------------------------------------------------------------
// The archives

export function dataOptions(opts: BenchOptions): DataOptions {
  return {
    size: opts.archiveSize,
    bz2Size: opts.bz2Size,
    smallCount: opts.smallCount,
    smallSize: opts.smallSize,
    xzLevel: opts.xzLevel,
    regenerate: opts.regenerate,
  };
}

/** Makes or finds the archives (before the session: generating them takes minutes, once). */
export async function prepareArchiveData(opts: BenchOptions): Promise<{
  data: PreparedData;
  seconds: number;
}> {
  const started = performance.now();
  log(`bench: archive cache ${join(dataRoot(), parametersKey(dataOptions(opts)))}`);
  const data = await prepareArchives(dataOptions(opts), opts.formats, log);
  return { data, seconds: (performance.now() - started) / 1000 };
}

/** The object key of the same bytes without an archive extension (dsfetch stores it as is). */
function plainKey(info: ArchiveInfo): string {
  return `plain/${info.key}.bin`;
}

/** Uploads each archive twice: under its key, and as a plain file (plainKey). */
export function uploadArchives(session: Session, infos: readonly ArchiveInfo[]): void {
  const started = performance.now();
  for (const info of infos) {
    uploadFile(session, info.file, info.key);
    uploadFile(session, info.file, plainKey(info));
  }
  log(
    `bench: uploaded ${infos.length * 2} objects in ${fmt((performance.now() - started) / 1000, 1)}s`,
  );
  spawnSync("sync");
}

// ---------------------------------------------------------------------------------------------
// The jobs of one archive

type Role = "dsfetch" | "dsfetch-plain" | "dsfetch-local" | "dte" | "limit";

interface Job {
  format: Format;
  role: Role;
  /** The peer that downloads (d-t-e). */
  peer?: PeerName;
  /** e.g. "s5cmd cp + tar -xzf" */
  label: string;
  steps: (outDir: string) => Step[];
  /** Where the extracted tree is, if the job extracts one (dsfetch: from its --json). */
  tree?: (outDir: string) => string;
  /** Untimed set-up in the fresh output directory (the directory tar -C extracts into). */
  prepare?: (outDir: string) => void;
}

const DOWNLOAD_VERB: Record<PeerName, string> = {
  s5cmd: "s5cmd cp",
  aws: "aws s3 cp",
  rclone: "rclone copy",
};

function jobsFor(info: ArchiveInfo, session: Session, opts: BenchOptions): Job[] {
  const env = baseEnv(session);
  const one = (name: string, argv: string[], discardStdout = false): Step => ({
    name,
    procs: [discardStdout ? { argv, env, discardStdout } : { argv, env }],
  });
  const jobs: Job[] = [];
  if (opts.tools.includes("dsfetch") && toolPath(session, "dsfetch")) {
    const dsfetch = (role: Role, key: string, label: string): Job => ({
      format: info.format,
      role,
      label,
      steps: (outDir) => [
        { name: "dsfetch", procs: [dsfetchProc(session, { kind: "object", key }, outDir)] },
      ],
    });
    jobs.push(dsfetch("dsfetch", info.key, "dsfetch fetch"));
    jobs.push(
      dsfetch("dsfetch-plain", plainKey(info), "dsfetch fetch, same bytes as a plain file"),
    );
  }

  const local = info.file;
  const bash = (script: string, ...args: string[]): string[] => [
    "bash",
    "-c",
    `set -o pipefail; ${script}`,
    "bash",
    ...args,
  ];
  // [label, extract argv (archive, dir) → argv]
  let extract: [string, (archive: string, dir: string) => string[]];
  let limits: [string, string[] | ((dir: string) => string[]), boolean][];
  const lbzip2 = which("lbzip2");
  switch (info.format) {
    case "gz":
      extract = ["tar -xzf", (a, d) => ["tar", "-xzf", a, "-C", d]];
      limits = [["gzip -dc > /dev/null", ["gzip", "-dc", local], true]];
      if (which("pigz")) limits.push(["pigz -dc > /dev/null", ["pigz", "-dc", local], true]);
      break;
    case "xz":
      extract = [
        "xz -dc -T0 | tar -xf -",
        (a, d) => bash('xz -dc -T0 "$1" | tar -xf - -C "$2"', a, d),
      ];
      limits = [["xz -dc -T0 > /dev/null", ["xz", "-dc", "-T0", local], true]];
      // pixz decodes the blocks in parallel too, with less system time: the best standalone
      // decompression here when installed (dsfetch uses xz for its memory limit).
      if (which("pixz")) limits.push(["pixz -d > /dev/null", ["pixz", "-d", "-i", local], true]);
      break;
    case "bz2":
      if (lbzip2) {
        extract = [
          "lbzip2 -dc | tar -xf -",
          (a, d) => bash('lbzip2 -dc "$1" | tar -xf - -C "$2"', a, d),
        ];
        limits = [["lbzip2 -dc > /dev/null", ["lbzip2", "-dc", local], true]];
      } else {
        extract = ["tar -xjf", (a, d) => ["tar", "-xjf", a, "-C", d]];
        limits = [["bzip2 -dc > /dev/null", ["bzip2", "-dc", local], true]];
      }
      break;
    case "zip":
      extract = ["unzip -q", (a, d) => ["unzip", "-q", a, "-d", d]];
      limits = [["unzip -q (local file)", (d) => ["unzip", "-q", local, "-d", d], false]];
      break;
    case "tar":
      extract = ["tar -xf", (a, d) => ["tar", "-xf", a, "-C", d]];
      limits = [["tar -xf (local file)", (d) => ["tar", "-xf", local, "-C", d], false]];
      break;
  }
  const [extractLabel, extractArgv] = extract;
  for (const peer of PEERS) {
    if (!opts.tools.includes(peer) || !toolPath(session, peer)) continue;
    jobs.push({
      format: info.format,
      role: "dte",
      peer,
      label: `${DOWNLOAD_VERB[peer]} + ${extractLabel}`,
      steps: (outDir) => {
        const archive = join(outDir, basename(info.key));
        return [
          {
            name: "download",
            procs: [peerProc(session, peer, { kind: "object", key: info.key }, outDir, "copy")],
          },
          one("extract", extractArgv(archive, join(outDir, "tree"))),
          one("rm", ["rm", "-f", archive]),
        ];
      },
      tree: (outDir) => join(outDir, "tree"),
      prepare: (outDir) => mkdirSync(join(outDir, "tree")),
    });
  }
  if (info.format !== "zip" && opts.tools.includes("dsfetch") && toolPath(session, "dsfetch")) {
    // dsfetch's extraction alone (bench/extract-local.mjs), beside the limit rows: the same
    // local file, no download, no verification, no sync.
    jobs.push({
      format: info.format,
      role: "dsfetch-local",
      label: "dsfetch extraction alone (local file)",
      steps: (outDir) => [
        one("extract", [
          toolPath(session, "dsfetch") ?? process.execPath,
          EXTRACT_LOCAL,
          local,
          outDir,
        ]),
      ],
      tree: (outDir) => outDir,
    });
  }
  for (const [label, argv, discard] of limits) {
    const job: Job = {
      format: info.format,
      role: "limit",
      label,
      steps: (outDir) => [
        typeof argv === "function"
          ? one("extract", argv(outDir))
          : one("decompress", argv, discard),
      ],
    };
    if (typeof argv === "function") job.tree = (outDir) => outDir;
    jobs.push(job);
  }
  return jobs;
}

// ---------------------------------------------------------------------------------------------
// Checking what a command wrote (outside the timed part)

const manifestCache = new Map<string, Map<string, [number, string]>>();

function manifestOf(info: ArchiveInfo): Map<string, [number, string]> {
  let m = manifestCache.get(info.manifest);
  if (!m) {
    m = new Map(readManifest(info.manifest).map(([p, s, h]) => [p, [s, h]]));
    manifestCache.set(info.manifest, m);
  }
  return m;
}

/** Undefined when `dir` holds exactly the archive's files; else what is wrong. */
function checkTree(dir: string, info: ArchiveInfo, deep: boolean): string | undefined {
  const expected = manifestOf(info);
  const files = listFiles(dir);
  if (files.length !== expected.size)
    return `${files.length} files under ${basename(dir)}, expected ${expected.size}`;
  let bad = 0;
  let first = "";
  for (const path of files) {
    const rel = relative(dir, path);
    const want = expected.get(rel);
    const wrong =
      want === undefined || statSync(path).size !== want[0] || (deep && md5File(path) !== want[1]);
    if (wrong) {
      bad++;
      first ||= rel;
    }
  }
  return bad ? `${bad} files wrong or unexpected (first: ${first})` : undefined;
}

const archiveMd5 = new Map<string, string>();

function checkPlain(path: string, info: ArchiveInfo, deep: boolean): string | undefined {
  if (!existsSync(path)) return `${path} missing`;
  const size = statSync(path).size;
  if (size !== info.bytes) return `${size} bytes, expected ${info.bytes}`;
  if (!deep) return undefined;
  let want = archiveMd5.get(info.file);
  if (!want) {
    want = md5File(info.file);
    archiveMd5.set(info.file, want);
  }
  return md5File(path) === want ? undefined : "MD5 differs from the archive";
}

// ---------------------------------------------------------------------------------------------
// The section

interface Row {
  job: Job;
  info: ArchiveInfo;
  runs: RunResult[];
  problems: string[];
  repeated: number;
  /** dsfetch --json of each good run: its own staging time and how it verified. */
  dsfetchSeconds: number[];
  verification?: string;
}

export async function runArchiveSection(
  session: Session,
  opts: BenchOptions,
  infos: readonly ArchiveInfo[],
): Promise<SectionResult> {
  const rows: Row[] = [];
  for (const info of infos) {
    const fr: Row[] = jobsFor(info, session, opts).map((job) => ({
      job,
      info,
      runs: [],
      problems: [],
      repeated: 0,
      dsfetchSeconds: [],
    }));
    rows.push(...fr);
    for (let run = 0; run < opts.runs; run++) {
      const order = fr.map((_, i) => fr[(i + run) % fr.length] as Row);
      for (const row of order) {
        checkInterrupted();
        const tag = `${info.format}-${fr.indexOf(row)}-${run + 1}`;
        let outDir = "";
        const { result: r, repeated } = await measureRepeating(
          `${info.key} ${row.job.label} run ${run + 1}`,
          async (attempt) => {
            if (outDir) await disposeOutput(outDir, info.files);
            outDir = join(session.benchDir, `out-${tag}-${attempt}`);
            await mkdir(outDir, { recursive: true });
            row.job.prepare?.(outDir);
            return measure(row.job.steps(outDir), {
              logBase: join(session.benchDir, `log-${tag}`),
              syncPath: outDir,
              idleWait: opts.idleWait,
              counters: session.counters,
            });
          },
        );
        if (repeated) row.repeated++;
        let dsfetchSeconds: number | undefined;
        if (r.ok) {
          const deep = run === 0;
          if (row.job.role === "dsfetch" || row.job.role === "dsfetch-plain") {
            const stdout = r.procs[0]?.stdout ?? "";
            const j = parseDsfetch(stdout);
            if (!j?.path) r.check = `--json output not understood: ${stdout.slice(0, 200)}`;
            else {
              dsfetchSeconds = j.seconds;
              if (j.seconds !== undefined) row.dsfetchSeconds.push(j.seconds);
              row.verification = verificationText(j);
              if (j.retries || j.refetchedBytes)
                row.problems.push(
                  `run ${run + 1}: ${j.retries} retries, ${j.refetchedBytes} bytes refetched`,
                );
              r.check =
                row.job.role === "dsfetch"
                  ? checkTree(j.path, info, deep)
                  : checkPlain(join(j.path, basename(plainKey(info))), info, deep);
            }
          } else if (row.job.tree) {
            r.check = checkTree(row.job.tree(outDir), info, deep);
          }
          if (r.check) row.problems.push(`run ${run + 1}: output wrong: ${r.check}`);
        } else {
          row.problems.push(`run ${run + 1}: ${r.failure}`);
        }
        log(
          `bench: ${info.key} ${row.job.label} run ${run + 1}/${opts.runs}: ${r.ok ? "ok" : `FAILED (${r.failure})`} ${fmt(r.wallSeconds)}s [${r.steps.map((s) => `${s.name} ${fmt(s.wallSeconds)}`).join(", ")}], sync after ${fmt(r.syncSeconds)}s, CPU ${fmt(r.cpuSeconds, 1)}s, peak RSS ${fmt(r.peakRssMiB, 0)} MiB, other ${fmt(r.otherCores)} cores${dsfetchSeconds !== undefined ? `, dsfetch's own time ${fmt(dsfetchSeconds)}s` : ""}${r.check ? `; OUTPUT WRONG: ${r.check}` : r.ok && (row.job.tree || row.job.role.startsWith("dsfetch")) ? (run === 0 ? "; output MD5s match" : "; output sizes match") : ""}`,
        );
        row.runs.push(r);
        await disposeOutput(outDir, info.files);
      }
    }
  }

  const profiles: string[] = [];
  if (opts.profile) {
    for (const info of infos) profiles.push(...(await profileDsfetch(info, session, opts)));
  }
  const formats = infos.map((i) => i.format);
  const markdown = [
    `### Archive datasets: dsfetch vs download-then-extract vs the decompressor alone (${opts.runs} run${opts.runs > 1 ? "s" : ""} each, median)`,
    "",
    renderArchiveSummary(rows, formats),
    "",
    renderDetail(rows, formats),
    "",
    "Archives:",
    ...infos.map(
      (i) =>
        `- ${i.key}: ${i.bytes} bytes, ${i.files} files, ${i.expandedBytes} bytes expanded; made with ${i.made}${xzBlocks(i)}; uploaded with s5cmd cp (50 MiB parts: a multipart ETag)`,
    ),
    `Wall = spawn to exit of each command, summed over a row's steps (d-t-e: the download, then the extraction, then rm of the archive); peak RSS = the largest ru_maxrss of a row's processes (GNU time \`%M\`), the maximum over runs; CPU = user+sys of every process of the row. dsfetch syncs its tree (syncfs) before it exits, the other commands leave dirty pages: "sync after" is a \`sync -f\` right after the row ended, and "… incl. d-t-e's sync" compares dsfetch with d-t-e's wall + that sync. d-t-e in the summary above is s5cmd's (every peer's d-t-e row is in the detail table). The limit is the fastest of the limit rows (the decompressor writing to /dev/null; for .zip and .tar the extraction of the local file). Other load = CPU used meanwhile by processes other than the row's, MinIO and the bench (a run above ${DISTURBED_CORES} cores is repeated once). Outputs are checked: every file's MD5 in run 1, sizes later.`,
    ...(profiles.length
      ? ["", "CPU profiles (`node --cpu-prof`, one extra untimed dsfetch run each):", ...profiles]
      : []),
  ].join("\n");
  return {
    markdown,
    summary: summaryRows(rows, infos),
    failed: rows.some((r) => r.problems.length > 0 || r.runs.some((x) => !x.ok)),
  };
}

/** `xz --list` block count: multi-block files decompress in parallel with -T0. */
function xzBlocks(info: ArchiveInfo): string {
  if (info.format !== "xz") return "";
  const r = spawnSync("xz", ["--robot", "--list", info.file], { encoding: "utf8" });
  const line = r.stdout?.split("\n").find((l) => l.startsWith("totals"));
  const blocks = line?.split("\t")[2];
  return blocks ? ` (${blocks} blocks)` : "";
}

// ---------------------------------------------------------------------------------------------
// CPU profile of one dsfetch run (--profile)

interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  samples: number[];
  timeDeltas: number[];
}

function summarizeProfile(file: string, top = 12): string[] {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byId.get(profile.samples[i] as number);
    const us = profile.timeDeltas[i + 1] ?? 0;
    total += us;
    if (!frame) continue;
    const url = frame.url.startsWith("file://")
      ? relative(repoRoot, fileURLToPath(frame.url))
      : frame.url || "(native)";
    const fn = `${frame.functionName || "(anonymous)"}${frame.url ? ` ${url}:${frame.lineNumber + 1}` : ""}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    const fileKey = frame.url ? url : frame.functionName || "(native)";
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + us);
  }
  const pct = (us: number): string => `${((100 * us) / total).toFixed(1)}%`;
  const lines = [
    `  main thread ${fmt(total / 1e6)} s sampled; self time by file: ${[...byFile]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([k, us]) => `${k} ${pct(us)}`)
      .join(", ")}`,
    "  top functions (self time):",
  ];
  for (const [fn, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top))
    lines.push(`    ${pct(us).padStart(6)}  ${fmt(us / 1e6)} s  ${fn}`);
  return lines;
}

async function profileDsfetch(
  info: ArchiveInfo,
  session: Session,
  opts: BenchOptions,
): Promise<string[]> {
  const outDir = join(session.benchDir, `profile-${info.format}`);
  const profDir = join(session.benchDir, `cpuprof-${info.format}`);
  await rm(profDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const job = jobsFor(info, session, opts).find((j) => j.role === "dsfetch");
  if (!job) return [];
  const steps = job.steps(outDir).map((s) => ({
    ...s,
    procs: s.procs.map((p) => ({
      ...p,
      argv: [p.argv[0] as string, "--cpu-prof", `--cpu-prof-dir=${profDir}`, ...p.argv.slice(1)],
    })),
  }));
  const r = await measure(steps, {
    logBase: join(session.benchDir, `log-profile-${info.format}`),
    syncPath: outDir,
    idleWait: 0,
  });
  await disposeOutput(outDir, info.files);
  const files = existsSync(profDir) ? await readdir(profDir) : [];
  const prof = files.find((f) => f.endsWith(".cpuprofile"));
  const head = `- ${info.key}: profiled dsfetch run ${r.ok ? "ok" : `FAILED (${r.failure})`}, ${fmt(r.wallSeconds)} s wall, ${fmt(r.cpuSeconds, 1)} s CPU (all processes)`;
  if (!prof) return [head, "  (no .cpuprofile written)"];
  return [head, ...summarizeProfile(join(profDir, prof))];
}

// ---------------------------------------------------------------------------------------------
// The tables

const FORMAT_LABEL: Record<Format, string> = {
  gz: ".tar.gz",
  xz: ".tar.xz",
  bz2: ".tar.bz2",
  zip: ".zip",
  tar: ".tar",
};

function archiveLabel(info: ArchiveInfo): string {
  return `${FORMAT_LABEL[info.format]}: ${fmt(info.bytes / MiB, 0)} MiB → ${fmt(info.expandedBytes / MiB, 0)} MiB, ${info.files} files`;
}

function cell(s: Summary | undefined): string {
  return s ? `${fmt(s.wall)} s, ${fmt(s.rss, 0)} MiB` : "failed";
}

function ratio(a: Summary | undefined, b: Summary | undefined, durable = false): string {
  if (!a || !b) return "-";
  return fmt(durable ? a.wall / b.durable : a.wall / b.wall);
}

function goal(value: string, limit: number, strict: boolean): string {
  const n = Number(value);
  if (!Number.isFinite(n)) return value;
  const met = strict ? n < limit : n <= limit;
  return `${value} ${met ? "✓" : "✗"}`;
}

interface FormatRows {
  info: ArchiveInfo;
  find: (role: Role, peer?: PeerName) => Row | undefined;
  /** The fastest limit row with its summary. */
  bestLimit: { row: Row; s: Summary } | undefined;
  /** The d-t-e row of the summary: s5cmd's, else the first peer's. */
  dte: Row | undefined;
}

function formatRows(rows: Row[], format: Format): FormatRows | undefined {
  const fr = rows.filter((r) => r.job.format === format);
  const info = fr[0]?.info;
  if (!info) return undefined;
  const find = (role: Role, peer?: PeerName): Row | undefined =>
    fr.find((r) => r.job.role === role && (peer === undefined || r.job.peer === peer));
  const bestLimit = fr
    .filter((r) => r.job.role === "limit")
    .map((r) => ({ row: r, s: summarize(r.runs) }))
    .filter((x): x is { row: Row; s: Summary } => x.s !== undefined)
    .sort((a, b) => a.s.wall - b.s.wall)[0];
  return { info, find, bestLimit, dte: find("dte", "s5cmd") ?? find("dte") };
}

function renderArchiveSummary(rows: Row[], formats: readonly Format[]): string {
  const lines = [
    "| archive (compressed → expanded) | dsfetch: median s, peak RSS | dsfetch, download only | download then extract (d-t-e) | decompression limit | dsfetch / d-t-e (goal < 1) | … / d-t-e incl. its sync | dsfetch / limit (goal ≤ 1.2) | dsfetch extraction alone, local file | … / limit |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const format of formats) {
    const f = formatRows(rows, format);
    if (!f) continue;
    const mine = f.find("dsfetch");
    const plain = f.find("dsfetch-plain");
    const ms = mine ? summarize(mine.runs) : undefined;
    const ps = plain ? summarize(plain.runs) : undefined;
    const local = f.find("dsfetch-local");
    const ls = local ? summarize(local.runs) : undefined;
    const ds = f.dte ? summarize(f.dte.runs) : undefined;
    const best = f.bestLimit;
    const cells = [
      archiveLabel(f.info),
      mine ? cell(ms) : "not run",
      plain ? cell(ps) : "not run",
      f.dte ? `${cell(ds)} (${f.dte.job.label})` : "not run (no peer)",
      best ? `${cell(best.s)} (${best.row.job.label})` : "failed",
      goal(ratio(ms, ds), 1, true),
      ratio(ms, ds, true),
      goal(ratio(ms, best?.s), 1.2, false),
      local ? cell(ls) : "-",
      local ? goal(ratio(ls, best?.s), 1.2, false) : "-",
    ];
    lines.push(`| ${cells.map(md).join(" | ")} |`);
  }
  return lines.join("\n");
}

function renderDetail(rows: Row[], formats: readonly Format[]): string {
  const lines = [
    "| archive | command | median wall s (min-max) | steps, median s | CPU s | peak RSS MiB | sync after s | other load, cores | notes |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const format of formats) {
    for (const row of rows.filter((r) => r.job.format === format)) {
      const s = summarize(row.runs);
      const failed = row.runs.filter((r) => !r.ok || r.check !== undefined);
      const notes = [...row.problems];
      if (row.job.role === "dsfetch" || row.job.role === "dsfetch-plain") {
        const inner = fmt(median(row.dsfetchSeconds));
        notes.unshift(
          `its own staging time ${inner} s${row.verification ? `; verified: ${row.verification}` : ""}`,
        );
      }
      if (row.repeated)
        notes.push(`${row.repeated} run(s) repeated: other processes used the CPUs`);
      if (row.runs.some((r) => r.startedBusy)) notes.push("machine busy before a run");
      if (failed.length) notes.push(`**${failed.length}/${row.runs.length} runs failed**`);
      const label = FORMAT_LABEL[format];
      if (!s) {
        lines.push(
          `| ${md(label)} | ${md(row.job.label)} | failed | | | | | | ${md(notes.join("; "))} |`,
        );
        continue;
      }
      const steps =
        s.steps.size > 1 ? [...s.steps].map(([k, v]) => `${k} ${fmt(v)}`).join(" + ") : "";
      const cells = [
        label,
        row.job.label,
        `${fmt(s.wall)} (${fmt(s.min)}-${fmt(s.max)})`,
        steps,
        fmt(s.cpu, 1),
        fmt(s.rss, 0),
        fmt(s.sync),
        fmt(s.other),
        notes.join("; "),
      ];
      lines.push(`| ${cells.map(md).join(" | ")} |`);
    }
  }
  return lines.join("\n");
}

/** One row per archive for bench/all.ts: dsfetch vs each peer's download-then-extract. */
function summaryRows(rows: Row[], infos: readonly ArchiveInfo[]): SummaryRow[] {
  const out: SummaryRow[] = [];
  for (const info of infos) {
    const f = formatRows(rows, info.format);
    if (!f) continue;
    const cells: SummaryRow["cells"] = {};
    const mine = summaryCell(summarize(f.find("dsfetch")?.runs ?? []));
    if (mine) cells.dsfetch = mine;
    for (const peer of PEERS) {
      const row = f.find("dte", peer);
      const c = row
        ? summaryCell(summarize(row.runs), row.job.label.replace(/^\S+ /, ""))
        : undefined;
      if (c) cells[peer] = c;
    }
    const row: SummaryRow = { scenario: `${archiveLabel(f.info)}: fetch + expand`, cells };
    if (f.bestLimit)
      row.reference = {
        seconds: f.bestLimit.s.wall,
        rssMiB: f.bestLimit.s.rss,
        what: `${f.bestLimit.row.job.label.replace(/ \(local file\)$/, "")}, local file`,
      };
    row.note = "peers: download, then extract, then rm the archive";
    out.push(row);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main (this script on its own)

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv, SCRIPT, ARCHIVE_FLAGS, {
    formats: [...ALL_FORMATS],
    idleWait: 30,
  });
  const p = { script: SCRIPT, npmScript: "bench:archive", argv, opts };
  return benchMain(
    // s5cmd uploads the archives: it is always set up.
    {
      ...p,
      prefix: "dsfetch-archive-bench",
      tools: [...new Set([...opts.tools, "s5cmd" as const])],
    },
    () => prepareArchiveData(opts),
    async (session, { data, seconds }) => {
      const started = performance.now();
      const infos = opts.formats.map((f) => data.archives.get(f) as ArchiveInfo);
      uploadArchives(session, infos);
      const setupSeconds = seconds + (performance.now() - started) / 1000;
      return { sections: [await runArchiveSection(session, opts, infos)], setupSeconds };
    },
  );
}

if (import.meta.main) runMain(main);
