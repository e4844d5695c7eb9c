// Benchmark (not a test) of archive datasets (issue 5): dsfetch's streaming expansion against
// downloading the archive with s5cmd and then extracting it with the usual tools, and against
// the decompressor alone on a local copy (the limit), from the same local S3 server (MinIO, via
// test/harness/s3-server.ts) in the same run.
//
//   npx node bench/archive.ts [--runs N] [--formats gz,xz,bz2,zip,tar] [--size 1Gi]
//                             [--bz2-size 256Mi] [--small-count 20000] [--small-size 16Ki]
//                             [--xz-level 1] [--idle-wait SECONDS] [--profile] [--regenerate]
//                             [--keep]
//
// Archives (bench/archive-data.ts; generated once, cached under $DSFETCH_BENCH_DIR or the OS
// temp dir): a 1 GiB mix of CSV, JSON lines, logs, float arrays and random bytes as .tar.gz,
// .tar.xz (multi-block, `xz -T0`), .zip and, smaller, .tar.bz2; 20,000 files of ~16 KiB as .tar.
// For each archive, in every run (the order rotates from run to run):
//   dsfetch         `node src/cli/entry.ts fetch --datasets - --storage-root <fresh> --team bench
//                   --json`, stdin [{"uri":"s3://<bucket>/<key>"}]: fetch + streaming expansion +
//                   verification + syncfs + publish
//   dsfetch, plain  the same bytes under a key without an archive extension: dsfetch's download
//                   alone (ranged GETs, MD5, syncfs, publish), to split dsfetch's time
//   d-t-e           download then extract: `s5cmd cp` of the object to a file, then the usual
//                   extraction (tar -xzf, xz -dc -T0 | tar -x, lbzip2 -dc | tar -x, unzip -q,
//                   tar -xf), then `rm` of the archive (dsfetch keeps no archive either)
//   limit           the decompressor alone on the cached local file, output to /dev/null (gzip
//                   -dc, pigz -dc, xz -dc -T0, lbzip2 -dc); for .zip and .tar, `unzip -q` and
//                   `tar -xf` of the local file into a fresh directory
// Every command writes into a fresh directory on the filesystem of MinIO's data; it is removed
// and `sync` run between runs. The page cache is not dropped (MinIO serves from memory).
// A Markdown table goes to stdout, logs to stderr.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
} from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { type S3Server, startS3Server } from "../test/harness/s3-server.ts";
import {
  ALL_FORMATS,
  type ArchiveInfo,
  type DataOptions,
  dataRoot,
  type Format,
  onPath,
  type PreparedData,
  parametersKey,
  prepareArchives,
  readManifest,
} from "./archive-data.ts";
import { ensureGnuTime, ensureS5cmd } from "./peers.ts";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const entry = join(repoRoot, "src", "cli", "entry.ts");
const MiB = 1024 * 1024;
const STEP_TIMEOUT_MS = 10 * 60_000;
/** A run during which other processes used more than this many cores is repeated (once). */
const DISTURBED_CORES = 0.25;
/** Cores' worth of CPU that other processes may use while the machine counts as idle. */
const IDLE_CORES = 0.15;
/** Another benchmark whose runs must not overlap ours (and ours not its). */
const OTHER_BENCH = "bench/fetch.ts";

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

// ---------------------------------------------------------------------------------------------
// Options

interface Options extends DataOptions {
  runs: number;
  formats: Format[];
  idleWait: number;
  profile: boolean;
  keep: boolean;
}

const USAGE = `usage: node bench/archive.ts [--runs 3] [--formats ${ALL_FORMATS.join(",")}] [--size 1Gi]
                            [--bz2-size 256Mi] [--small-count 20000] [--small-size 16Ki] [--xz-level 1]
                            [--idle-wait 30] [--profile] [--regenerate] [--keep]`;

class UsageError extends Error {}

function parseSizeArg(flag: string, text: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(text);
  if (!m)
    throw new UsageError(
      `${flag} ${text}: expected a number of bytes, optionally with Ki, Mi or Gi`,
    );
  const unit = m[2] === "Ki" ? 1024 : m[2] === "Mi" ? MiB : m[2] === "Gi" ? 1024 * MiB : 1;
  const value = Number(m[1]) * unit;
  if (!(value > 0)) throw new UsageError(`${flag} must be > 0`);
  return value;
}

function wholeArg(flag: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max)
    throw new UsageError(`${flag} ${text}: expected a whole number from ${min} to ${max}`);
  return Number(text);
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    runs: 3,
    formats: [...ALL_FORMATS],
    size: 1024 * MiB,
    bz2Size: 256 * MiB,
    smallCount: 20_000,
    smallSize: 16 * 1024,
    xzLevel: 1,
    regenerate: false,
    idleWait: 30,
    profile: false,
    keep: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf("=");
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--runs":
        opts.runs = wholeArg(flag, value(), 1);
        break;
      case "--formats": {
        const items = value().split(",").filter(Boolean);
        for (const f of items)
          if (!ALL_FORMATS.includes(f as Format))
            throw new UsageError(`--formats: unknown ${f}; expected some of ${ALL_FORMATS}`);
        if (items.length === 0) throw new UsageError("--formats needs at least one format");
        opts.formats = ALL_FORMATS.filter((f) => items.includes(f));
        break;
      }
      case "--size":
        opts.size = parseSizeArg(flag, value());
        break;
      case "--bz2-size":
        opts.bz2Size = parseSizeArg(flag, value());
        break;
      case "--small-count":
        opts.smallCount = wholeArg(flag, value(), 1);
        break;
      case "--small-size":
        opts.smallSize = parseSizeArg(flag, value());
        break;
      case "--xz-level":
        opts.xzLevel = wholeArg(flag, value(), 0, 9);
        break;
      case "--idle-wait":
        opts.idleWait = wholeArg(flag, value(), 0);
        break;
      case "--profile":
        opts.profile = true;
        break;
      case "--regenerate":
        opts.regenerate = true;
        break;
      case "--keep":
        opts.keep = true;
        break;
      case "-h":
      case "--help":
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// What else the machine is doing: CPU used by processes other than the command, MinIO and this
// script. The accounting of bench/fetch.ts (copied from there), with one change: kernel threads
// (writeback of the command's own output by kworkers, kswapd, kdamond) and irq/softirq time (the
// loopback traffic) are not counted as other processes' load, since the command itself causes
// most of them; otherwise every run that writes a GiB looks "disturbed".

const CLOCK_TICKS = 100; // USER_HZ on Linux
const PF_KTHREAD = 0x00200000;

/** CPU seconds of user, nice and system time of the whole machine since boot. */
function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0)) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** Fields of /proc/<pid>/stat after the command name (index 0 = field 3, "state"). */
function statFields(pid: number | string): number[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .map(Number);
  } catch {
    return undefined;
  }
}

/** CPU seconds of one process and its reaped children. */
function processCpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  const f = statFields(pid);
  if (!f) return 0;
  return ((f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0)) / CLOCK_TICKS;
}

/** CPU seconds of every kernel thread alive now. */
function kernelThreadsCpuSeconds(): number {
  let ticks = 0;
  let names: string[] = [];
  try {
    names = readdirSync("/proc");
  } catch {
    return 0;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (!f || ((f[6] ?? 0) & PF_KTHREAD) === 0) continue;
    ticks += (f[11] ?? 0) + (f[12] ?? 0);
  }
  return ticks / CLOCK_TICKS;
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface LoadMark {
  busy: number | undefined;
  kernel: number;
  server: number;
  self: number;
}

let serverPid: number | undefined;

function loadMark(): LoadMark {
  return {
    busy: machineBusySeconds(),
    kernel: kernelThreadsCpuSeconds(),
    server: processCpuSeconds(serverPid),
    self: selfCpuSeconds(),
  };
}

/** CPU seconds used from `from` to `to` by processes other than MinIO, this script and `excluded`. */
function foreignCpu(from: LoadMark, to: LoadMark, excluded: number): number | undefined {
  if (from.busy === undefined || to.busy === undefined) return undefined;
  return Math.max(
    0,
    to.busy -
      from.busy -
      (to.kernel - from.kernel) -
      (to.server - from.server) -
      (to.self - from.self) -
      excluded,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Seconds the whole benchmark may still spend waiting for an idle machine. */
let idleBudgetSeconds = 300;

/** Waits (at most `perRun` s, 300 s in all) until other processes use < IDLE_CORES. */
async function waitForIdle(perRun: number): Promise<boolean> {
  const maxSeconds = Math.min(perRun, idleBudgetSeconds);
  const begun = performance.now();
  const deadline = begun + maxSeconds * 1000;
  let announced = false;
  try {
    for (;;) {
      const mark = loadMark();
      await sleep(1_000);
      const foreign = foreignCpu(mark, loadMark(), 0);
      if (foreign === undefined || foreign < IDLE_CORES) return true;
      if (interrupted || performance.now() > deadline) return false;
      if (!announced) {
        log(
          `bench: waiting (up to ${Math.round(maxSeconds)}s) for other processes to stop using the CPUs (now ${fmt(foreign)} cores)…`,
        );
        announced = true;
      }
    }
  } finally {
    idleBudgetSeconds = Math.max(0, idleBudgetSeconds - (performance.now() - begun) / 1000);
  }
}

/** Pids of other benchmark processes (bench/fetch.ts) running now. */
function otherBenchPids(): number[] {
  const found: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return found;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmdline.includes(OTHER_BENCH)) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

/** Waits (polling every 30 s, at most 2 hours) while another benchmark runs. */
async function waitForOtherBench(): Promise<void> {
  const started = performance.now();
  for (;;) {
    const pids = otherBenchPids();
    if (pids.length === 0 || interrupted) return;
    const waited = (performance.now() - started) / 1000;
    if (waited > 7200) {
      log(`bench: ${OTHER_BENCH} still runs (pids ${pids.join(", ")}) after 2 h: going on anyway`);
      return;
    }
    log(
      `bench: ${OTHER_BENCH} is running (pids ${pids.join(", ")}): waiting for it to finish (waited ${Math.round(waited)}s)…`,
    );
    await sleep(30_000);
  }
}

// ---------------------------------------------------------------------------------------------
// Commands and how one run of one is measured

type Role = "dsfetch" | "dsfetch-plain" | "dte" | "limit";

interface Step {
  /** Short name for the splits ("download", "extract", "rm"). */
  name: string;
  argv: string[];
  stdinFile?: string;
  /** stdout to /dev/null (the decompression limits) rather than a log file. */
  discardStdout?: boolean;
}

interface Job {
  format: Format;
  role: Role;
  /** e.g. "s5cmd cp + tar -xzf" */
  label: string;
  steps: (outDir: string) => Step[];
  /** Where the extracted tree is, if the job extracts one (dsfetch: from its --json). */
  tree?: (outDir: string) => string;
  /** Untimed set-up in the fresh output directory (the directory tar -C extracts into). */
  prepare?: (outDir: string) => void;
}

interface StepResult {
  name: string;
  wallSeconds: number;
  cpuSeconds: number | undefined;
  peakRssMiB: number | undefined;
}

interface RunResult {
  ok: boolean;
  failure?: string;
  wallSeconds: number;
  steps: StepResult[];
  cpuSeconds: number | undefined;
  peakRssMiB: number | undefined;
  syncSeconds: number;
  otherCores: number | undefined;
  startedBusy: boolean;
  stdout: string;
  check?: string;
  /** dsfetch --json: its own staging time and how it verified. */
  dsfetchSeconds?: number;
  verification?: string;
}

let currentChild: ChildProcess | undefined;
let interrupted = false;

/** Kills the command and everything it started (GNU time runs it as a child: its own group). */
function killTree(child: ChildProcess | undefined): void {
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

async function runStep(
  step: Step,
  env: NodeJS.ProcessEnv,
  gnuTime: string | undefined,
  logBase: string,
): Promise<{ result: StepResult; exitCode: number | null; error?: string }> {
  const timeFile = `${logBase}.${step.name}.time`;
  const [bin, ...args] = gnuTime
    ? [gnuTime, "-o", timeFile, "-f", "%M %U %S", ...step.argv]
    : (step.argv as [string, ...string[]]);
  const stdinFd = openSync(step.stdinFile ?? "/dev/null", "r");
  const outFd = openSync(step.discardStdout ? "/dev/null" : `${logBase}.stdout`, "a");
  const errFd = openSync(`${logBase}.stderr`, "a");
  let error: string | undefined;
  const started = performance.now();
  let exitCode: number | null;
  try {
    exitCode = await new Promise<number | null>((resolve) => {
      const child = spawn(bin as string, args, {
        env,
        stdio: [stdinFd, outFd, errFd],
        detached: true,
      });
      currentChild = child;
      const timer = setTimeout(() => {
        error = `timed out after ${STEP_TIMEOUT_MS / 1000}s`;
        killTree(child);
      }, STEP_TIMEOUT_MS);
      child.on("error", (e) => {
        error = String(e);
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        currentChild = undefined;
        resolve(signal ? 128 : code);
      });
    });
  } finally {
    closeSync(stdinFd);
    closeSync(outFd);
    closeSync(errFd);
  }
  const wallSeconds = (performance.now() - started) / 1000;
  let cpuSeconds: number | undefined;
  let peakRssMiB: number | undefined;
  if (gnuTime && existsSync(timeFile)) {
    const last = readFileSync(timeFile, "utf8").trim().split("\n").at(-1) ?? "";
    const m = /^(\d+) ([\d.]+) ([\d.]+)$/.exec(last);
    if (m) {
      peakRssMiB = Number(m[1]) / 1024;
      cpuSeconds = Number(m[2]) + Number(m[3]);
    }
  }
  const result = { name: step.name, wallSeconds, cpuSeconds, peakRssMiB };
  return error === undefined ? { result, exitCode } : { result, exitCode, error };
}

async function runJob(
  job: Job,
  env: NodeJS.ProcessEnv,
  gnuTime: string | undefined,
  outDir: string,
  logBase: string,
  idleWait: number,
): Promise<RunResult> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  job.prepare?.(outDir);
  for (const suffix of [".stdout", ".stderr"]) await rm(logBase + suffix, { force: true });
  spawnSync("sync");
  const idle = await waitForIdle(idleWait);
  const steps: StepResult[] = [];
  let failure: string | undefined;
  const mark = loadMark();
  for (const step of job.steps(outDir)) {
    const r = await runStep(step, env, gnuTime, logBase);
    steps.push(r.result);
    if (r.error !== undefined || r.exitCode !== 0) {
      const stderr = existsSync(`${logBase}.stderr`)
        ? readFileSync(`${logBase}.stderr`, "utf8").trim().split("\n").slice(-3).join(" | ")
        : "";
      failure = `${step.name}: ${r.error ?? `exit ${r.exitCode}`}${stderr ? `: ${stderr}` : ""}`;
      break;
    }
  }
  const endMark = loadMark();
  const syncStarted = performance.now();
  spawnSync("sync", ["-f", outDir]);
  const syncSeconds = (performance.now() - syncStarted) / 1000;
  const wallSeconds = steps.reduce((a, s) => a + s.wallSeconds, 0);
  const cpuKnown = steps.every((s) => s.cpuSeconds !== undefined);
  const cpuSeconds = cpuKnown ? steps.reduce((a, s) => a + (s.cpuSeconds ?? 0), 0) : undefined;
  const rss = steps.map((s) => s.peakRssMiB).filter((x): x is number => x !== undefined);
  const foreign = foreignCpu(mark, endMark, cpuSeconds ?? 0);
  const stdoutFile = `${logBase}.stdout`;
  const result: RunResult = {
    ok: failure === undefined,
    wallSeconds,
    steps,
    cpuSeconds,
    peakRssMiB: rss.length ? Math.max(...rss) : undefined,
    syncSeconds,
    otherCores: foreign === undefined ? undefined : foreign / wallSeconds,
    startedBusy: !idle,
    stdout: existsSync(stdoutFile) ? readFileSync(stdoutFile, "utf8") : "",
  };
  if (failure !== undefined) result.failure = failure;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Removing outputs. On ext4 without a journal (this machine's root filesystem), the inode
// allocator skips every inode deleted within the last dirty_expire_centisecs *seconds* (3000 s
// by default: recently_deleted() in fs/ext4/ialloc.c compares seconds with centiseconds),
// reading each one's inode-table block, for every new file. Measured here: `tar -xf` of 20,000
// files took 0.8-1.1 s into clean block groups and 6-12 s (all system time; perf: 70% in
// recently_deleted) after 20,000-file trees had been removed. So outputs with many files are not
// removed between runs (which would slow down whichever command runs next) but at the very end.

/** Outputs of archives with at least this many files are kept until the end. */
const MANY_FILES = 2000;
const keptOutputs: string[] = [];

async function dispose(outDir: string, info: ArchiveInfo): Promise<void> {
  if (info.files >= MANY_FILES) keptOutputs.push(outDir);
  else await rm(outDir, { recursive: true, force: true });
}

/** Whether `dir` is on an ext4 filesystem without a journal (see above). */
function ext4WithoutJournal(dir: string): boolean {
  try {
    let best: string[] | undefined;
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const f = line.split(" ");
      const mountPoint = f[1] ?? "";
      if (!(dir === mountPoint || dir.startsWith(mountPoint === "/" ? "/" : `${mountPoint}/`)))
        continue;
      if (!best || mountPoint.length >= (best[1] ?? "").length) best = f;
    }
    if (best?.[2] !== "ext4") return false;
    const dev = (best[0] ?? "").split("/").at(-1) ?? "";
    const journals = existsSync("/proc/fs/jbd2") ? readdirSync("/proc/fs/jbd2") : [];
    return !journals.some((j) => j.startsWith(`${dev}-`));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Checking what a command wrote (outside the timed part)

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .filter((p) => !relative(dir, p).split("/").includes(".dsfetch"));
}

function md5File(path: string): string {
  const hash = createHash("md5");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(8 * MiB);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

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
    return `${files.length} files under ${relative(benchDirForMessages, dir) || dir}, expected ${expected.size}`;
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

let benchDirForMessages = "";

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

interface DsfetchJson {
  path?: string;
  bytes?: number;
  seconds?: number;
  verification?: Record<string, number>;
  retries?: number;
  refetchedBytes?: number;
  error?: { code?: string; message?: string };
}

function parseDsfetch(stdout: string): DsfetchJson | undefined {
  try {
    const parsed = JSON.parse(stdout) as { datasets?: DsfetchJson[] };
    return parsed.datasets?.[0];
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The jobs of one archive

interface Context {
  server: S3Server;
  bucket: string;
  benchDir: string;
  s5cmd: string | undefined;
}

/** The object key of the same bytes without an archive extension (dsfetch stores it as is). */
function plainKey(info: ArchiveInfo): string {
  return `plain/${info.key}.bin`;
}

function jobsFor(info: ArchiveInfo, ctx: Context): Job[] {
  const b = ctx.bucket;
  const jobs: Job[] = [];
  const dsfetch = (role: Role, key: string, label: string): Job => ({
    format: info.format,
    role,
    label,
    steps: (outDir) => [
      {
        name: "dsfetch",
        argv: [
          process.execPath,
          entry,
          "fetch",
          "--datasets",
          "-",
          "--storage-root",
          outDir,
          "--team",
          "bench",
          "--json",
        ],
        stdinFile: join(ctx.benchDir, `datasets-${key.replace(/\//g, "_")}.json`),
      },
    ],
  });
  jobs.push(dsfetch("dsfetch", info.key, "dsfetch fetch"));
  jobs.push(dsfetch("dsfetch-plain", plainKey(info), "dsfetch fetch, same bytes as a plain file"));

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
  const lbzip2 = onPath("lbzip2");
  switch (info.format) {
    case "gz":
      extract = ["tar -xzf", (a, d) => ["tar", "-xzf", a, "-C", d]];
      limits = [["gzip -dc > /dev/null", ["gzip", "-dc", local], true]];
      if (onPath("pigz")) limits.push(["pigz -dc > /dev/null", ["pigz", "-dc", local], true]);
      break;
    case "xz":
      extract = [
        "xz -dc -T0 | tar -xf -",
        (a, d) => bash('xz -dc -T0 "$1" | tar -xf - -C "$2"', a, d),
      ];
      limits = [["xz -dc -T0 > /dev/null", ["xz", "-dc", "-T0", local], true]];
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
  if (ctx.s5cmd) {
    const s5cmd = ctx.s5cmd;
    const [label, argv] = extract;
    jobs.push({
      format: info.format,
      role: "dte",
      label: `s5cmd cp + ${label}`,
      steps: (outDir) => {
        const archive = join(outDir, info.key);
        const tree = join(outDir, "tree");
        return [
          {
            name: "download",
            argv: [
              s5cmd,
              "--endpoint-url",
              ctx.server.endpoint,
              "--log",
              "error",
              "cp",
              `s3://${b}/${info.key}`,
              archive,
            ],
          },
          { name: "extract", argv: argv(archive, tree) },
          { name: "rm", argv: ["rm", "-f", archive] },
        ];
      },
      tree: (outDir) => join(outDir, "tree"),
      prepare: (outDir) => mkdirSync(join(outDir, "tree")),
    });
  }
  for (const [label, argv, discard] of limits) {
    const job: Job = {
      format: info.format,
      role: "limit",
      label,
      steps: (outDir) => [
        typeof argv === "function"
          ? { name: "extract", argv: argv(outDir) }
          : { name: "decompress", argv, discardStdout: discard },
      ],
    };
    if (typeof argv === "function") job.tree = (outDir) => outDir;
    jobs.push(job);
  }
  return jobs;
}

// ---------------------------------------------------------------------------------------------
// Setting up: the S3 server, the bucket, the uploads

function baseEnv(ctx: Context): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    LANG: "C.UTF-8",
    TERM: "dumb",
    TMPDIR: tmpdir(),
    AWS_ENDPOINT_URL: ctx.server.endpoint,
    AWS_ACCESS_KEY_ID: ctx.server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: ctx.server.secretAccessKey,
    AWS_REGION: ctx.server.region,
    AWS_DEFAULT_REGION: ctx.server.region,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: join(ctx.benchDir, "no-aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: join(ctx.benchDir, "no-aws-credentials"),
  };
}

/** Uploads with s5cmd (multipart, 50 MiB parts: a "-N" ETag, as most uploaders make). */
function upload(ctx: Context, file: string, key: string): void {
  if (!ctx.s5cmd) throw new Error("no s5cmd to upload with");
  const r = spawnSync(
    ctx.s5cmd,
    [
      "--endpoint-url",
      ctx.server.endpoint,
      "--log",
      "error",
      "cp",
      file,
      `s3://${ctx.bucket}/${key}`,
    ],
    { env: baseEnv(ctx), encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`uploading ${key} failed: ${r.stderr || r.error}`);
}

function measureStartup(env: NodeJS.ProcessEnv): number | undefined {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const r = spawnSync(process.execPath, [entry, "version"], { env, stdio: "ignore" });
    if (r.status !== 0) return undefined;
    times.push((performance.now() - t) / 1000);
  }
  return median(times);
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
  ctx: Context,
  gnuTime: string | undefined,
): Promise<string[]> {
  const outDir = join(ctx.benchDir, `profile-${info.format}`);
  const profDir = join(ctx.benchDir, `cpuprof-${info.format}`);
  await rm(profDir, { recursive: true, force: true });
  const job = jobsFor(info, ctx)[0] as Job;
  const profiled: Job = {
    ...job,
    steps: (dir) =>
      job.steps(dir).map((s) => ({
        ...s,
        argv: [s.argv[0] as string, "--cpu-prof", `--cpu-prof-dir=${profDir}`, ...s.argv.slice(1)],
      })),
  };
  const r = await runJob(
    profiled,
    baseEnv(ctx),
    gnuTime,
    outDir,
    join(ctx.benchDir, `log-profile-${info.format}`),
    0,
  );
  await rm(outDir, { recursive: true, force: true });
  const files = existsSync(profDir) ? await readdir(profDir) : [];
  const prof = files.find((f) => f.endsWith(".cpuprofile"));
  const head = `- ${info.key}: profiled dsfetch run ${r.ok ? "ok" : `FAILED (${r.failure})`}, ${fmt(r.wallSeconds)} s wall, ${fmt(r.cpuSeconds, 1)} s CPU (all processes)`;
  if (!prof) return [head, "  (no .cpuprofile written)"];
  return [head, ...summarizeProfile(join(profDir, prof))];
}

// ---------------------------------------------------------------------------------------------
// Statistics and the tables

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function fmt(n: number | undefined, digits = 2): string {
  return n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits);
}

interface Row {
  job: Job;
  info: ArchiveInfo;
  runs: RunResult[];
  problems: string[];
  repeated: number;
}

interface Summary {
  wall: number;
  min: number;
  max: number;
  durable: number;
  rss: number;
  cpu: number;
  sync: number;
  other: number;
  steps: Map<string, number>;
  ok: number;
}

function summarize(row: Row): Summary | undefined {
  const ok = row.runs.filter((r) => r.ok && r.check === undefined);
  if (ok.length === 0) return undefined;
  const walls = ok.map((r) => r.wallSeconds);
  const steps = new Map<string, number>();
  for (const name of ok[0]?.steps.map((s) => s.name) ?? [])
    steps.set(
      name,
      median(ok.map((r) => r.steps.find((s) => s.name === name)?.wallSeconds ?? Number.NaN)),
    );
  return {
    wall: median(walls),
    min: Math.min(...walls),
    max: Math.max(...walls),
    durable: median(ok.map((r) => r.wallSeconds + r.syncSeconds)),
    rss: Math.max(...ok.map((r) => r.peakRssMiB ?? Number.NaN)),
    cpu: median(ok.map((r) => r.cpuSeconds ?? Number.NaN)),
    sync: median(ok.map((r) => r.syncSeconds)),
    other: median(ok.map((r) => r.otherCores ?? Number.NaN)),
    steps,
    ok: ok.length,
  };
}

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

/** A Markdown table cell: a literal "|" would end it. */
function md(text: string): string {
  return text.replace(/\|/g, "\\|");
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

function renderSummary(rows: Row[], formats: Format[]): string {
  const lines = [
    "| archive (compressed → expanded) | dsfetch: median s, peak RSS | dsfetch, download only | download then extract (d-t-e) | decompression limit | dsfetch / d-t-e (goal < 1) | … / d-t-e incl. its sync | dsfetch / limit (goal ≤ 1.2) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const format of formats) {
    const fr = rows.filter((r) => r.job.format === format);
    const info = fr[0]?.info;
    if (!info) continue;
    const find = (role: Role): Row | undefined => fr.find((r) => r.job.role === role);
    const mine = find("dsfetch");
    const plain = find("dsfetch-plain");
    const dte = find("dte");
    const ms = mine ? summarize(mine) : undefined;
    const ps = plain ? summarize(plain) : undefined;
    const ds = dte ? summarize(dte) : undefined;
    const limits = fr
      .filter((r) => r.job.role === "limit")
      .map((r) => ({ row: r, s: summarize(r) }))
      .filter((x): x is { row: Row; s: Summary } => x.s !== undefined)
      .sort((a, b) => a.s.wall - b.s.wall);
    const best = limits[0];
    const cells = [
      archiveLabel(info),
      cell(ms),
      cell(ps),
      dte ? `${cell(ds)} (${dte.job.label})` : "unavailable (no s5cmd)",
      best ? `${cell(best.s)} (${best.row.job.label})` : "failed",
      goal(ratio(ms, ds), 1, true),
      ratio(ms, ds, true),
      goal(ratio(ms, best?.s), 1.2, false),
    ];
    lines.push(`| ${cells.map(md).join(" | ")} |`);
  }
  return lines.join("\n");
}

function renderDetail(rows: Row[], formats: Format[]): string {
  const lines = [
    "| archive | command | median wall s (min-max) | steps, median s | CPU s | peak RSS MiB | sync after s | other load, cores | notes |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const format of formats) {
    for (const row of rows.filter((r) => r.job.format === format)) {
      const s = summarize(row);
      const failed = row.runs.filter((r) => !r.ok || r.check !== undefined);
      const notes = [...row.problems];
      if (row.job.role === "dsfetch" || row.job.role === "dsfetch-plain") {
        const inner = median(
          row.runs.filter((r) => r.ok).map((r) => r.dsfetchSeconds ?? Number.NaN),
        );
        const v = row.runs.find((r) => r.verification)?.verification;
        notes.unshift(`its own staging time ${fmt(inner)} s${v ? `; verified: ${v}` : ""}`);
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

// ---------------------------------------------------------------------------------------------
// Main

async function main(argv: string[]): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 22) {
    console.error(
      `bench: needs Node >= 22, this is ${process.version}: run it through \`npx node\``,
    );
    return 2;
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`bench: ${signal}: stopping`);
    interrupted = true;
    killTree(currentChild);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const startedAll = performance.now();
  await waitForOtherBench();
  const srcAtStart = sourceDigest();
  const benchParent = process.env.DSFETCH_BENCH_DIR || tmpdir();
  await mkdir(benchParent, { recursive: true });
  const benchDir = await mkdtemp(join(benchParent, "dsfetch-archive-bench-"));
  benchDirForMessages = benchDir;
  log(
    `bench: directory ${benchDir}; data cache ${join(dataRoot(), parametersKey(opts))}; node ${process.version}; ${cpus().length} CPUs, ${fmt(totalmem() / 1024 ** 3, 1)} GiB RAM`,
  );
  let server: S3Server | undefined;
  try {
    const gnuTimePeer = await ensureGnuTime(log);
    const gnuTime = gnuTimePeer.ok ? gnuTimePeer.path : undefined;
    if (!gnuTimePeer.ok) log(`bench: no peak RSS or CPU: ${gnuTimePeer.reason}`);
    const s5 = await ensureS5cmd(log);
    if (!s5.ok) log(`bench: s5cmd unavailable: ${s5.reason}; no download-then-extract rows`);

    const prepStarted = performance.now();
    const data: PreparedData = await prepareArchives(opts, opts.formats, log);
    const prepSeconds = (performance.now() - prepStarted) / 1000;

    server = await startS3Server({ label: "dsfetch bench", log });
    const pidMatch = /pid (\d+)/.exec(server.description);
    if (pidMatch) serverPid = Number(pidMatch[1]);
    const bucket = `dsfetch-archive-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
    const s3 = new S3Client({
      endpoint: server.endpoint,
      region: server.region,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    s3.destroy();
    const ctx: Context = { server, bucket, benchDir, s5cmd: s5.ok ? s5.path : undefined };
    const env = baseEnv(ctx);

    const infos = opts.formats.map((f) => data.archives.get(f) as ArchiveInfo);
    const upStarted = performance.now();
    for (const info of infos) {
      upload(ctx, info.file, info.key);
      upload(ctx, info.file, plainKey(info));
      for (const key of [info.key, plainKey(info)])
        await writeFile(
          join(benchDir, `datasets-${key.replace(/\//g, "_")}.json`),
          JSON.stringify([{ uri: `s3://${bucket}/${key}` }]),
        );
    }
    log(
      `bench: uploaded ${infos.length * 2} objects in ${fmt((performance.now() - upStarted) / 1000, 1)}s`,
    );
    spawnSync("sync");
    const startup = measureStartup(env);

    const rows: Row[] = [];
    for (const info of infos) {
      const fr: Row[] = jobsFor(info, ctx).map((job) => ({
        job,
        info,
        runs: [],
        problems: [],
        repeated: 0,
      }));
      rows.push(...fr);
      for (let run = 0; run < opts.runs; run++) {
        const order = fr.map((_, i) => fr[(i + run) % fr.length] as Row);
        for (const row of order) {
          if (interrupted) throw new Error("interrupted");
          await waitForOtherBench();
          const tag = `${info.format}-${fr.indexOf(row)}-${run + 1}`;
          const logBase = join(benchDir, `log-${tag}`);
          let r: RunResult | undefined;
          let outDir = "";
          for (let attempt = 1; attempt <= 2; attempt++) {
            if (outDir) await dispose(outDir, info);
            outDir = join(benchDir, `out-${tag}-${attempt}`);
            r = await runJob(row.job, env, gnuTime, outDir, logBase, opts.idleWait);
            if (interrupted) throw new Error("interrupted");
            if (attempt === 1 && r.ok && (r.otherCores ?? 0) > DISTURBED_CORES) {
              row.repeated++;
              log(
                `bench: ${info.key} ${row.job.label} run ${run + 1}: other processes used ${fmt(r.otherCores)} cores meanwhile: repeating it`,
              );
              continue;
            }
            break;
          }
          if (!r) throw new Error("unreachable");
          if (r.ok) {
            const deep = run === 0;
            if (row.job.role === "dsfetch" || row.job.role === "dsfetch-plain") {
              const j = parseDsfetch(r.stdout);
              if (!j?.path) r.check = `--json output not understood: ${r.stdout.slice(0, 200)}`;
              else {
                r.dsfetchSeconds = j.seconds;
                r.verification = Object.entries(j.verification ?? {})
                  .map(([k, n]) => `${k} ${n}`)
                  .join(", ");
                if (j.retries || j.refetchedBytes)
                  row.problems.push(
                    `run ${run + 1}: ${j.retries} retries, ${j.refetchedBytes} bytes refetched`,
                  );
                r.check =
                  row.job.role === "dsfetch"
                    ? checkTree(j.path, info, deep)
                    : checkPlain(
                        join(j.path, plainKey(info).split("/").at(-1) as string),
                        info,
                        deep,
                      );
              }
            } else if (row.job.tree) {
              r.check = checkTree(row.job.tree(outDir), info, deep);
            }
            if (r.check) row.problems.push(`run ${run + 1}: output wrong: ${r.check}`);
          } else {
            row.problems.push(`run ${run + 1}: ${r.failure}`);
          }
          log(
            `bench: ${info.key} ${row.job.label} run ${run + 1}/${opts.runs}: ${r.ok ? "ok" : `FAILED (${r.failure})`} ${fmt(r.wallSeconds)}s [${r.steps.map((s) => `${s.name} ${fmt(s.wallSeconds)}`).join(", ")}], sync after ${fmt(r.syncSeconds)}s, CPU ${fmt(r.cpuSeconds, 1)}s, peak RSS ${fmt(r.peakRssMiB, 0)} MiB, other ${fmt(r.otherCores)} cores${r.dsfetchSeconds !== undefined ? `, dsfetch's own time ${fmt(r.dsfetchSeconds)}s` : ""}${r.check ? `; OUTPUT WRONG: ${r.check}` : r.ok && (row.job.tree || row.job.role.startsWith("dsfetch")) ? (run === 0 ? "; output MD5s match" : "; output sizes match") : ""}`,
          );
          row.runs.push(r);
          await dispose(outDir, info);
        }
      }
    }

    const profiles: string[] = [];
    if (opts.profile) {
      for (const info of infos) {
        await waitForOtherBench();
        profiles.push(...(await profileDsfetch(info, ctx, gnuTime)));
      }
    }

    const noJournal = ext4WithoutJournal(benchDir);
    const srcAtEnd = sourceDigest();
    if (srcAtEnd !== srcAtStart)
      log(`bench: WARNING: src/ changed while the benchmark ran (${srcAtStart} → ${srcAtEnd})`);
    const elapsed = (performance.now() - startedAll) / 1000;
    const command = `npx node bench/archive.ts${argv.length ? ` ${argv.join(" ")}` : ""}`;
    const out = [
      "",
      `### Archive datasets: dsfetch vs download-then-extract vs the decompressor alone (${opts.runs} run${opts.runs > 1 ? "s" : ""} each, median)`,
      "",
      renderSummary(rows, opts.formats),
      "",
      renderDetail(rows, opts.formats),
      "",
      `Reproduce: \`${command}\` (from the repository root; ${fmt(elapsed / 60, 1)} min here, of which ${fmt(prepSeconds / 60, 1)} min making or finding the archives).`,
      `dsfetch source: ${sourceRevision()} (src/ digest ${srcAtStart}${srcAtEnd === srcAtStart ? "" : `; **src/ changed during the run, now ${srcAtEnd}: the dsfetch runs may mix versions**`}), run from source by node ${process.version}; its start-up (\`node src/cli/entry.ts version\`) ${fmt(startup)} s.`,
      `Machine: ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? "?"}), ${fmt(totalmem() / 1024 ** 3, 1)} GiB RAM; S3 = ${server.description.replace(/ at http\S+, pid \d+/, "")} on loopback, sharing the CPUs; s5cmd ${s5.ok ? s5.version : "unavailable"}.`,
      "Archives:",
      ...infos.map(
        (i) =>
          `- ${i.key}: ${i.bytes} bytes, ${i.files} files, ${i.expandedBytes} bytes expanded; made with ${i.made}${xzBlocks(i)}; uploaded with s5cmd cp (50 MiB parts: a multipart ETag)`,
      ),
      `Wall = spawn to exit of each command, summed over a row's steps (d-t-e: s5cmd cp, then the extraction, then rm of the archive); peak RSS = the largest ru_maxrss of a row's processes (GNU time \`%M\`), the maximum over runs; CPU = user+sys of every process of the row. dsfetch syncs its tree (syncfs) before it exits, the other commands leave dirty pages: "sync after" is a \`sync -f\` right after the row ended, and "… incl. d-t-e's sync" compares dsfetch with d-t-e's wall + that sync. The limit is the fastest of the limit rows (the decompressor writing to /dev/null; for .zip and .tar the extraction of the local file). Other load = CPU used meanwhile by processes other than the row's, MinIO and the bench (a run above ${DISTURBED_CORES} cores is repeated once). Outputs are checked: every file's MD5 in run 1, sizes later.`,
      ...(noJournal
        ? [
            `Filesystem: ${benchDir} is on ext4 without a journal, whose inode allocator is slow for a long time (3000 s) after many files were deleted (see the comment in bench/archive.ts): the outputs of archives with ≥ ${MANY_FILES} files are kept until the end of the run; deletions by other processes in that window still slow every command that creates many files.`,
          ]
        : []),
      ...(profiles.length
        ? ["", "CPU profiles (`node --cpu-prof`, one extra untimed dsfetch run each):", ...profiles]
        : []),
      "",
    ].join("\n");
    console.log(out);
    await writeFile(join(benchDir, "results.md"), out);
    return rows.some((r) => r.problems.length > 0 || r.runs.some((x) => !x.ok)) ? 1 : 0;
  } finally {
    if (server) await server.stop();
    if (opts.keep) log(`bench: kept ${benchDir}`);
    else {
      if (keptOutputs.length) log(`bench: removing ${keptOutputs.length} kept outputs…`);
      await rm(benchDir, { recursive: true, force: true });
    }
  }
}

/** `xz --list` block count: multi-block files decompress in parallel with -T0. */
function xzBlocks(info: ArchiveInfo): string {
  if (info.format !== "xz") return "";
  const r = spawnSync("xz", ["--robot", "--list", info.file], { encoding: "utf8" });
  const line = r.stdout?.split("\n").find((l) => l.startsWith("totals"));
  const blocks = line?.split("\t")[2];
  return blocks ? ` (${blocks} blocks)` : "";
}

/** A digest of every file under src/, to tell whether dsfetch changed while it was measured
 * (copied from bench/fetch.ts). */
function sourceDigest(): string {
  const hash = createHash("sha256");
  const dir = join(repoRoot, "src");
  const files = readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const f of files) hash.update(`${relative(dir, f)}\0`).update(readFileSync(f));
  return hash.digest("hex").slice(0, 12);
}

function sourceRevision(): string {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  if (head.status !== 0) return "unknown commit";
  const dirty = spawnSync("git", ["status", "--porcelain", "--", "src"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  return `commit ${head.stdout.trim()}${dirty.stdout?.trim() ? " + uncommitted changes in src/" : ""}`;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exitCode = 1;
  },
);
