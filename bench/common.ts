// What every benchmark script shares (bench/fetch.ts, bench/archive.ts, bench/scenarios.ts and
// bench/all.ts, which runs them all against one MinIO): the options, the accounting of what else
// the machine is doing, running commands under GNU time (one at a time, or many at once), the
// removal of outputs (see "Removing outputs"), output checks, statistics and formatting, and
// what the results are stamped with (the source digest and revision, the machine).

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));
/** dsfetch's CLI as installed users run it (bin/dsfetch.js → dist/bundle/), built by buildDsfetch(). */
export const dsfetchEntry = join(repoRoot, "bin", "dsfetch.js");

/**
 * dsfetch's extraction alone (bench/extract-local.mjs), bundled by buildDsfetch() beside the
 * bundled worker threads, as the command runs them.
 */
export const extractLocalEntry = join(repoRoot, "dist", "bundle", "extract-local.js");

/**
 * Builds dist/ from src/ (`npm run build`: tsc, then the bundles), so the bench times the
 * shipped code; then bench/extract-local.mjs into dist/bundle/ (extractLocalEntry).
 */
export function buildDsfetch(): void {
  const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc");
  for (const args of [
    [tsc, "-p", join(repoRoot, "tsconfig.build.json")],
    [join(repoRoot, "scripts", "bundle.ts")],
  ]) {
    const result = spawnSync(process.execPath, args, { cwd: repoRoot, encoding: "utf8" });
    if (result.status !== 0) {
      throw new Error(`building dsfetch failed:\n${result.stdout}${result.stderr}`);
    }
  }
  buildSync({
    entryPoints: [join(repoRoot, "bench", "extract-local.mjs")],
    outfile: extractLocalEntry,
    bundle: true,
    platform: "node",
    format: "esm",
    external: ["lzma-native", "unbzip2-stream"],
    logLevel: "warning",
  });
}
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

// ---------------------------------------------------------------------------------------------
// Options: one set for every script; each script accepts the flags it uses.

export const ALL_TOOLS = ["dsfetch", "s5cmd", "aws", "rclone"] as const;
export type ToolName = (typeof ALL_TOOLS)[number];
export type PeerName = Exclude<ToolName, "dsfetch">;
export const ALL_DATASETS = ["big", "small"] as const;
export type DatasetName = (typeof ALL_DATASETS)[number];
export const ALL_FORMATS = ["gz", "xz", "bz2", "zip", "tar"] as const;
export type Format = (typeof ALL_FORMATS)[number];
export const ALL_SECTIONS = ["big", "small", "archive", "warm", "crowd"] as const;
export type Section = (typeof ALL_SECTIONS)[number];

export interface BenchOptions {
  runs: number;
  sections: Section[];
  tools: ToolName[];
  /** bench/fetch.ts: which of its two datasets. */
  datasets: DatasetName[];
  bigSize: number;
  partSize: number;
  smallCount: number;
  smallSize: number;
  formats: Format[];
  /** Bytes of the mixed tree of the .tar.gz, .tar.xz and .zip archives. */
  archiveSize: number;
  bz2Size: number;
  xzLevel: number;
  regenerate: boolean;
  profile: boolean;
  /** Warm cache: which datasets (already staged) are fetched again. */
  warm: DatasetName[];
  workers: number;
  crowdSize: number;
  idleWait: number;
  ignoreOtherBench: boolean;
  keep: boolean;
}

export const DEFAULT_OPTIONS: Readonly<BenchOptions> = Object.freeze<BenchOptions>({
  runs: 3,
  sections: [...ALL_SECTIONS],
  tools: [...ALL_TOOLS],
  datasets: [...ALL_DATASETS],
  bigSize: 2 * GiB,
  partSize: 8 * MiB,
  smallCount: 20_000,
  smallSize: 16 * 1024,
  formats: ["gz", "xz", "zip"],
  archiveSize: GiB,
  bz2Size: 256 * MiB,
  xzLevel: 1,
  regenerate: false,
  profile: false,
  warm: [...ALL_DATASETS],
  workers: 16,
  crowdSize: GiB,
  idleWait: 60,
  ignoreOtherBench: false,
  keep: false,
});

function sizeText(n: number): string {
  if (n % GiB === 0) return `${n / GiB}Gi`;
  if (n % MiB === 0) return `${n / MiB}Mi`;
  if (n % 1024 === 0) return `${n / 1024}Ki`;
  return String(n);
}

/** Every flag and its value in the usage text (a script's default); null: no value. */
const FLAGS = {
  "--sections": (o: BenchOptions) => o.sections.join(","),
  "--runs": (o: BenchOptions) => String(o.runs),
  "--tools": (o: BenchOptions) => o.tools.join(","),
  "--datasets": (o: BenchOptions) => o.datasets.join(","),
  "--big-size": (o: BenchOptions) => sizeText(o.bigSize),
  "--part-size": (o: BenchOptions) => sizeText(o.partSize),
  "--small-count": (o: BenchOptions) => String(o.smallCount),
  "--small-size": (o: BenchOptions) => sizeText(o.smallSize),
  "--formats": (o: BenchOptions) => o.formats.join(","),
  "--archive-size": (o: BenchOptions) => sizeText(o.archiveSize),
  "--size": (o: BenchOptions) => sizeText(o.archiveSize),
  "--bz2-size": (o: BenchOptions) => sizeText(o.bz2Size),
  "--xz-level": (o: BenchOptions) => String(o.xzLevel),
  "--regenerate": null,
  "--profile": null,
  "--warm": (o: BenchOptions) => o.warm.join(","),
  "--workers": (o: BenchOptions) => String(o.workers),
  "--crowd-size": (o: BenchOptions) => sizeText(o.crowdSize),
  "--idle-wait": (o: BenchOptions) => String(o.idleWait),
  "--ignore-other-bench": null,
  "--keep": null,
} as const;
export type Flag = keyof typeof FLAGS;
/** Accepted, not shown: `--size` is bench/archive.ts's old name of --archive-size. */
const HIDDEN_FLAGS: readonly Flag[] = ["--size"];

export class UsageError extends Error {}

/** The usage text, with the script's defaults as the values. */
export function usage(script: string, flags: readonly Flag[], defaults: BenchOptions): string {
  const parts = flags
    .filter((f) => !HIDDEN_FLAGS.includes(f))
    .map((f) => {
      const value = FLAGS[f];
      return `[${f}${value ? ` ${value(defaults)}` : ""}]`;
    });
  const lines: string[] = [];
  let line = `usage: npx node ${script}`;
  for (const p of parts) {
    if (line.length + p.length + 1 > 100) {
      lines.push(line);
      line = " ".repeat(8);
    }
    line += ` ${p}`;
  }
  lines.push(line);
  return `${lines.join("\n")}\n(values shown are the defaults; bench/README.md explains each flag)`;
}

/** A number of bytes, optionally with Ki, Mi or Gi (base 2). */
export function parseSizeArg(flag: string, text: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(text);
  if (!m)
    throw new UsageError(
      `${flag} ${text}: expected a number of bytes, optionally with Ki, Mi or Gi`,
    );
  const unit = m[2] === "Ki" ? 1024 : m[2] === "Mi" ? MiB : m[2] === "Gi" ? GiB : 1;
  const value = Number(m[1]) * unit;
  if (!(value > 0)) throw new UsageError(`${flag} must be > 0`);
  return value;
}

export function wholeArg(
  flag: string,
  text: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max)
    throw new UsageError(
      `${flag} ${text}: expected a whole number ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}`,
    );
  return Number(text);
}

/** A comma-separated subset of `allowed`, returned in `allowed`'s order. */
export function listArg<T extends string>(flag: string, text: string, allowed: readonly T[]): T[] {
  const items = text.split(",").filter(Boolean);
  for (const item of items) {
    if (!allowed.includes(item as T))
      throw new UsageError(`${flag}: unknown ${item}; expected some of ${allowed.join(",")}`);
  }
  if (items.length === 0)
    throw new UsageError(`${flag} needs at least one of ${allowed.join(",")}`);
  return allowed.filter((a) => items.includes(a));
}

/**
 * Parses `argv` (`--flag value` or `--flag=value`) into options, accepting only `flags`.
 * `-h`/`--help` prints the usage and exits.
 */
export function parseOptions(
  argv: readonly string[],
  script: string,
  flags: readonly Flag[],
  defaults: Partial<BenchOptions> = {},
): BenchOptions {
  const base: BenchOptions = { ...DEFAULT_OPTIONS, ...defaults };
  try {
    return parseInto({ ...base }, argv, script, flags, base);
  } catch (e) {
    if (e instanceof UsageError)
      throw new UsageError(`${e.message}\n${usage(script, flags, base)}`);
    throw e;
  }
}

function parseInto(
  o: BenchOptions,
  argv: readonly string[],
  script: string,
  flags: readonly Flag[],
  base: BenchOptions,
): BenchOptions {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "-h" || arg === "--help") {
      console.log(usage(script, flags, base));
      process.exit(0);
    }
    const eq = arg.indexOf("=");
    const flag = (eq > 0 ? arg.slice(0, eq) : arg) as Flag;
    if (!flags.includes(flag)) throw new UsageError(`unknown argument ${arg}`);
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--runs":
        o.runs = wholeArg(flag, value(), 1);
        break;
      case "--sections":
        o.sections = listArg(flag, value(), ALL_SECTIONS);
        break;
      case "--tools":
        o.tools = listArg(flag, value(), ALL_TOOLS);
        break;
      case "--datasets":
        o.datasets = listArg(flag, value(), ALL_DATASETS);
        break;
      case "--big-size":
        o.bigSize = parseSizeArg(flag, value());
        break;
      case "--part-size":
        o.partSize = parseSizeArg(flag, value());
        if (o.partSize < 5 * MiB)
          throw new UsageError("--part-size must be at least 5Mi (S3's minimum)");
        break;
      case "--small-count":
        o.smallCount = wholeArg(flag, value(), 1);
        break;
      case "--small-size":
        o.smallSize = parseSizeArg(flag, value());
        break;
      case "--formats":
        o.formats = listArg(flag, value(), ALL_FORMATS);
        break;
      case "--archive-size":
      case "--size":
        o.archiveSize = parseSizeArg(flag, value());
        break;
      case "--bz2-size":
        o.bz2Size = parseSizeArg(flag, value());
        break;
      case "--xz-level":
        o.xzLevel = wholeArg(flag, value(), 0, 9);
        break;
      case "--regenerate":
        o.regenerate = true;
        break;
      case "--profile":
        o.profile = true;
        break;
      case "--warm":
        o.warm = listArg(flag, value(), ALL_DATASETS);
        break;
      case "--workers":
        o.workers = wholeArg(flag, value(), 2, 256);
        break;
      case "--crowd-size":
        o.crowdSize = parseSizeArg(flag, value());
        break;
      case "--idle-wait":
        o.idleWait = wholeArg(flag, value(), 0);
        break;
      case "--ignore-other-bench":
        o.ignoreOtherBench = true;
        break;
      case "--keep":
        o.keep = true;
        break;
    }
  }
  return o;
}

/**
 * Runs a script's main: prints usage errors (which carry the usage text) and exits 2, other
 * errors with their stack and exits 1.
 */
export function runMain(main: (argv: string[]) => Promise<number>): void {
  const argv = process.argv.slice(2);
  main(argv)
    .then(
      (code) => {
        process.exitCode = code;
      },
      (e: unknown) => {
        if (e instanceof UsageError) {
          console.error(e.message);
          process.exitCode = 2;
          return;
        }
        console.error(e instanceof Error ? (e.stack ?? e.message) : e);
        process.exitCode = 1;
      },
    )
    .finally(exitSoon);
}

/**
 * Ends the process a few seconds after main() settled if something still holds the event loop
 * (session 34: `npm run bench` stayed alive after printing its tables until killed by hand),
 * saying what held it. The timer itself holds nothing (unref).
 */
function exitSoon(): void {
  setTimeout(() => {
    const held = process.getActiveResourcesInfo().filter((what) => what !== "Timeout");
    console.error(
      `bench: done; exiting (the event loop was still held by: ${held.join(", ") || "nothing named"})`,
    );
    process.exit();
  }, 5_000).unref();
}

/** dsfetch needs Node >= 22 (run the scripts through `npx node`). */
export function nodeTooOld(): string | undefined {
  const major = Number(process.versions.node.split(".")[0]);
  return major >= 22
    ? undefined
    : `needs Node >= 22, this is ${process.version}: run it through \`npx node\``;
}

// ---------------------------------------------------------------------------------------------
// State of this process: the S3 server's pid (its CPU is not "other load"), the commands
// running now (killed on SIGINT/SIGTERM), whether we were interrupted.

export const state = {
  interrupted: false,
  serverPid: undefined as number | undefined,
  gnuTime: undefined as string | undefined,
  /** Wait before each run while another benchmark of this repository runs. */
  waitForOtherBench: true,
};

const running = new Set<ChildProcess>();

/** Kills a command and everything it started (GNU time runs it as a child: its own group). */
export function killTree(child: ChildProcess | undefined): void {
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

export function installSignalHandlers(): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`bench: ${signal}: stopping`);
    state.interrupted = true;
    for (const child of running) killTree(child);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

export function checkInterrupted(): void {
  if (state.interrupted) throw new Error("interrupted");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// What else the machine is doing: CPU used by processes other than the command, MinIO and this
// script (another test suite on the same 2 cores ruins a measurement). Kernel threads
// (writeback of the command's own output by kworkers, kswapd, kdamond) and irq/softirq time (the
// loopback traffic) are not counted as other processes' load: the command itself causes most
// of them, and otherwise every run that writes a GiB or creates 20,000 files looks "disturbed".

const CLOCK_TICKS = 100; // USER_HZ on Linux
const PF_KTHREAD = 0x00200000;
/** A run during which other processes used more than this many cores is repeated (once)… */
export const DISTURBED_CORES = 0.25;
/** …if it was shorter than this (longer runs are only marked). */
export const REPEAT_MAX_SECONDS = 60;
/** Cores' worth of CPU that other processes may use while the machine counts as idle. */
export const IDLE_CORES = 0.15;
/** Seconds a whole benchmark may spend waiting for an idle machine. */
export const IDLE_BUDGET_SECONDS = 300;

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

/** CPU seconds of one process and its reaped children (utime stime cutime cstime). */
function processCpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  const f = statFields(pid);
  if (!f) return 0;
  return ((f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0)) / CLOCK_TICKS;
}

function pidsNow(): string[] {
  try {
    return readdirSync("/proc").filter((n) => /^\d+$/.test(n));
  } catch {
    return [];
  }
}

/** CPU seconds of every kernel thread alive now. */
function kernelThreadsCpuSeconds(): number {
  let ticks = 0;
  for (const pid of pidsNow()) {
    const f = statFields(pid);
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

function loadMark(): LoadMark {
  return {
    busy: machineBusySeconds(),
    kernel: kernelThreadsCpuSeconds(),
    server: processCpuSeconds(state.serverPid),
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

/** Seconds the whole benchmark may still spend waiting for an idle machine. */
let idleBudgetSeconds = IDLE_BUDGET_SECONDS;

/**
 * Waits until other processes use less than IDLE_CORES (sampled over 2 s), at most `perRun`
 * seconds (and IDLE_BUDGET_SECONDS over the whole benchmark); `perRun` 0 does not look. Returns
 * whether it was idle and the load seen last (cores).
 */
export async function waitForIdle(
  perRun: number,
): Promise<{ idle: boolean; cores: number | undefined }> {
  if (perRun <= 0) return { idle: true, cores: undefined }; // --idle-wait 0: no look at all
  const maxSeconds = Math.min(perRun, idleBudgetSeconds);
  const begun = performance.now();
  const deadline = begun + maxSeconds * 1000;
  let announced = false;
  try {
    for (;;) {
      const mark = loadMark();
      await sleep(2_000);
      const foreign = foreignCpu(mark, loadMark(), 0);
      if (foreign === undefined) return { idle: true, cores: undefined };
      const cores = foreign / 2;
      if (cores < IDLE_CORES) return { idle: true, cores };
      if (state.interrupted || performance.now() > deadline) return { idle: false, cores };
      if (!announced) {
        log(
          `bench: waiting (up to ${Math.round(maxSeconds)}s) for other processes to stop using the CPUs (now ${fmt(cores)} cores)…`,
        );
        announced = true;
      }
    }
  } finally {
    idleBudgetSeconds = Math.max(0, idleBudgetSeconds - (performance.now() - begun) / 1000);
  }
}

/** The benchmark scripts of this repository: two of them must not measure at the same time. */
const BENCH_SCRIPTS = ["bench/fetch.ts", "bench/archive.ts", "bench/scenarios.ts", "bench/all.ts"];

/** This process and its ancestors (`npm run bench` → sh -c "node bench/all.ts" → us). */
function selfAndAncestors(): Set<number> {
  const pids = new Set<number>();
  let pid = process.pid;
  for (let i = 0; i < 64 && pid > 1 && !pids.has(pid); i++) {
    pids.add(pid);
    pid = statFields(pid)?.[1] ?? 0; // field 4, ppid
  }
  return pids;
}

/** Pids of other benchmark processes running now. */
function otherBenchPids(): number[] {
  const mine = selfAndAncestors();
  const found: number[] = [];
  for (const name of pidsNow()) {
    if (mine.has(Number(name))) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").replace(/\0/g, " ");
      if (BENCH_SCRIPTS.some((s) => cmdline.includes(s))) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

/** Waits (polling every 30 s, at most 2 hours) while another benchmark runs. */
export async function waitForOtherBench(): Promise<void> {
  if (!state.waitForOtherBench) return;
  const started = performance.now();
  for (;;) {
    const pids = otherBenchPids();
    if (pids.length === 0 || state.interrupted) return;
    const waited = (performance.now() - started) / 1000;
    if (waited > 7200) {
      log(`bench: another benchmark still runs (pids ${pids.join(", ")}) after 2 h: going on`);
      return;
    }
    log(
      `bench: another benchmark is running (pids ${pids.join(", ")}): waiting for it to finish (waited ${Math.round(waited)}s; --ignore-other-bench to not wait)…`,
    );
    await sleep(30_000);
  }
}

// ---------------------------------------------------------------------------------------------
// Running commands and measuring them

/** One process; `argv[0]` is the program. */
export interface Proc {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdinFile?: string;
  /** stdout to /dev/null (the decompression limits) rather than a log file. */
  discardStdout?: boolean;
}

/** Processes started together; the step ends when the last one exits. */
export interface Step {
  /** Short name for the splits ("download", "extract", "rm"). */
  name: string;
  procs: Proc[];
}

export interface ProcResult {
  exitCode: number | null;
  error?: string;
  /** Spawn to exit. */
  wallSeconds: number;
  /** From the step's start to this process's exit. */
  exitAtSeconds: number;
  cpuSeconds: number | undefined;
  peakRssMiB: number | undefined;
  stdout: string;
  stderrTail: string;
}

export interface RunResult {
  ok: boolean;
  failure?: string;
  /** Sum of the steps' walls (first spawn to last exit of each). */
  wallSeconds: number;
  steps: { name: string; wallSeconds: number; procs: ProcResult[] }[];
  /** Every process of every step, in order. */
  procs: ProcResult[];
  /** user+sys of every process (GNU time). */
  cpuSeconds: number | undefined;
  /** The largest ru_maxrss of any process. */
  peakRssMiB: number | undefined;
  /** The largest sum of ru_maxrss over the processes of one step (many workers at once). */
  rssSumMiB: number | undefined;
  /** `sync -f` of the output right after the last step. */
  syncSeconds: number;
  /** Cores' worth of CPU used by other processes (not these, MinIO or this script) meanwhile. */
  otherCores: number | undefined;
  /** The machine was not idle before the run (waited --idle-wait seconds in vain). */
  startedBusy: boolean;
  /** What the S3 server sent and answered meanwhile, if it can be counted. */
  served: S3Counters | undefined;
  /** Set by the caller: what is wrong with the output. */
  check?: string;
}

/** Bytes the S3 server sent (response bodies) and the requests it answered, by API name. */
export interface S3Counters {
  sentBytes: number;
  requests: Record<string, number>;
}

export type CounterSource = () => Promise<S3Counters | undefined>;

function countersDelta(
  a: S3Counters | undefined,
  b: S3Counters | undefined,
): S3Counters | undefined {
  if (!a || !b) return undefined;
  const requests: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.requests)) {
    const d = v - (a.requests[k] ?? 0);
    if (d > 0) requests[k] = d;
  }
  return { sentBytes: b.sentBytes - a.sentBytes, requests };
}

export const RUN_TIMEOUT_MS = 10 * 60_000;

function readGnuTime(timeFile: string): { cpu?: number; rss?: number } {
  if (!existsSync(timeFile)) return {};
  // GNU time writes "Command exited with non-zero status N" before the format line.
  const last = readFileSync(timeFile, "utf8").trim().split("\n").at(-1) ?? "";
  const m = /^(\d+) ([\d.]+) ([\d.]+)$/.exec(last);
  return m ? { rss: Number(m[1]) / 1024, cpu: Number(m[2]) + Number(m[3]) } : {};
}

function readIfExists(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

/** Runs one process under GNU time (when there is one); `t0` is its step's start. */
async function runProc(
  proc: Proc,
  logBase: string,
  t0: number,
  timeoutMs: number,
): Promise<ProcResult> {
  const timeFile = `${logBase}.time`;
  const outFile = `${logBase}.stdout`;
  const errFile = `${logBase}.stderr`;
  for (const f of [timeFile, outFile, errFile]) rmSync(f, { force: true });
  const [bin, ...args] = state.gnuTime
    ? [state.gnuTime, "-o", timeFile, "-f", "%M %U %S", ...proc.argv]
    : (proc.argv as [string, ...string[]]);
  const stdinFd = openSync(proc.stdinFile ?? "/dev/null", "r");
  const outFd = openSync(proc.discardStdout ? "/dev/null" : outFile, "w");
  const errFd = openSync(errFile, "w");
  let error: string | undefined;
  const started = performance.now();
  let exitCode: number | null;
  try {
    exitCode = await new Promise<number | null>((resolve) => {
      const child = spawn(bin as string, args, {
        env: proc.env,
        stdio: [stdinFd, outFd, errFd],
        detached: true, // its own process group, so a kill reaches the tool under GNU time
      });
      running.add(child);
      const timer = setTimeout(() => {
        error = `timed out after ${timeoutMs / 1000}s`;
        killTree(child);
      }, timeoutMs);
      child.on("error", (e) => {
        error = String(e);
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        running.delete(child);
        resolve(signal ? 128 : code);
      });
    });
  } finally {
    closeSync(stdinFd);
    closeSync(outFd);
    closeSync(errFd);
  }
  const ended = performance.now();
  const { cpu, rss } = readGnuTime(timeFile);
  const result: ProcResult = {
    exitCode,
    wallSeconds: (ended - started) / 1000,
    exitAtSeconds: (ended - t0) / 1000,
    cpuSeconds: cpu,
    peakRssMiB: rss,
    stdout: readIfExists(outFile),
    stderrTail: readIfExists(errFile).trim().split("\n").slice(-5).join("\n"),
  };
  if (error !== undefined) result.error = error;
  return result;
}

export interface MeasureOptions {
  /** Log files are `<logBase>.<step>[.<i>].{stdout,stderr,time}`. */
  logBase: string;
  /**
   * Seconds that must have passed since the last output was removed before the run starts
   * (see settleAfterRemoval): every tool then writes into memory in the same state.
   */
  settleSeconds?: number;
  /** `sync -f` this path right after the last step (the output). */
  syncPath: string;
  idleWait: number;
  counters?: CounterSource | undefined;
  timeoutMs?: number;
}

/**
 * One measured run of `steps`, one after the other (a step's processes all at once): `sync`,
 * wait for another benchmark and for an idle machine, then spawn to exit, GNU time's CPU and
 * RSS, the S3 server's counters, other processes' load, and a `sync -f` of the output after.
 */
export async function measure(steps: Step[], o: MeasureOptions): Promise<RunResult> {
  spawnSync("sync");
  await waitForOtherBench();
  await settleAfterRemoval(o.settleSeconds ?? 0);
  const idle = await waitForIdle(o.idleWait);
  const before = await o.counters?.();
  const mark = loadMark();
  const stepResults: RunResult["steps"] = [];
  const procs: ProcResult[] = [];
  let rssSum: number | undefined;
  let failure: string | undefined;
  for (const step of steps) {
    const t0 = performance.now();
    const results = await Promise.all(
      step.procs.map((p, i) =>
        runProc(
          p,
          `${o.logBase}.${step.name}${step.procs.length > 1 ? `.${i}` : ""}`,
          t0,
          o.timeoutMs ?? RUN_TIMEOUT_MS,
        ),
      ),
    );
    stepResults.push({
      name: step.name,
      wallSeconds: (performance.now() - t0) / 1000,
      procs: results,
    });
    procs.push(...results);
    const rss = results.map((r) => r.peakRssMiB);
    if (rss.every((x) => x !== undefined)) {
      const sum = rss.reduce((a, b) => a + b, 0);
      rssSum = Math.max(rssSum ?? 0, sum);
    }
    const bad = results.findIndex((r) => r.error !== undefined || r.exitCode !== 0);
    if (bad >= 0) {
      const r = results[bad] as ProcResult;
      const which = step.procs.length > 1 ? ` (process ${bad + 1} of ${step.procs.length})` : "";
      failure = `${step.name}${which}: ${r.error ?? `exit ${r.exitCode}`}${r.stderrTail ? `: ${r.stderrTail.split("\n").slice(-3).join(" | ")}` : ""}`;
      break;
    }
  }
  const endMark = loadMark();
  const after = await o.counters?.();
  const syncStarted = performance.now();
  if (existsSync(o.syncPath)) spawnSync("sync", ["-f", o.syncPath]);
  const syncSeconds = (performance.now() - syncStarted) / 1000;
  const wallSeconds = stepResults.reduce((a, s) => a + s.wallSeconds, 0);
  const cpuKnown = procs.every((p) => p.cpuSeconds !== undefined);
  const cpuSeconds = cpuKnown ? procs.reduce((a, p) => a + (p.cpuSeconds ?? 0), 0) : undefined;
  const rss = procs.map((p) => p.peakRssMiB).filter((x): x is number => x !== undefined);
  // Over the commands' own time only (the sync's kernel writeback would count as foreign CPU).
  const foreign = foreignCpu(mark, endMark, cpuSeconds ?? 0);
  const result: RunResult = {
    ok: failure === undefined,
    wallSeconds,
    steps: stepResults,
    procs,
    cpuSeconds,
    peakRssMiB: rss.length ? Math.max(...rss) : undefined,
    rssSumMiB: rssSum,
    syncSeconds,
    otherCores: foreign === undefined ? undefined : foreign / wallSeconds,
    startedBusy: !idle.idle,
    served: countersDelta(before, after),
  };
  if (failure !== undefined) result.failure = failure;
  return result;
}

/**
 * Runs `once` (attempt 1) and, when other processes used more than DISTURBED_CORES meanwhile
 * and the run was shorter than REPEAT_MAX_SECONDS, once more (attempt 2), whose result counts.
 */
export async function measureRepeating(
  label: string,
  once: (attempt: number) => Promise<RunResult>,
): Promise<{ result: RunResult; repeated: boolean }> {
  const first = await once(1);
  checkInterrupted();
  const disturbed = (first.otherCores ?? 0) > DISTURBED_CORES;
  if (!(first.ok && disturbed && first.wallSeconds < REPEAT_MAX_SECONDS))
    return { result: first, repeated: false };
  log(
    `bench: ${label}: ${fmt(first.wallSeconds)}s but other processes used ${fmt(first.otherCores)} cores meanwhile: repeating it`,
  );
  const second = await once(2);
  checkInterrupted();
  return { result: second, repeated: true };
}

/** Median wall time of a command (its start-up cost when it only prints a version). */
export function measureStartup(argv: string[], env: NodeJS.ProcessEnv): number | undefined {
  const [bin, ...args] = argv;
  if (!bin) return undefined;
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const r = spawnSync(bin, args, { env, stdio: "ignore" });
    if (r.status !== 0) return undefined;
    times.push((performance.now() - t) / 1000);
  }
  return median(times);
}

// ---------------------------------------------------------------------------------------------
// Removing outputs. On ext4 without a journal (this machine's root filesystem), the inode
// allocator skips every inode deleted within the last dirty_expire_centisecs *seconds* (3000 s
// by default: recently_deleted() in fs/ext4/ialloc.c compares seconds with centiseconds),
// reading each one's inode-table block, for every new file. Measured here: `tar -xf` of 20,000
// files took 0.8-1.1 s into clean block groups and 6-12 s (all system time; perf: 70% in
// recently_deleted) after 20,000-file trees had been removed. So outputs with many files are not
// removed between runs (which would slow down whichever command runs next) but at the very end,
// after every section.

// Memory after a removal. On a VM with virtio-balloon free page reporting ("Free page
// reporting enabled" at boot, as here), memory that stays free for ~2 s is handed back to the
// host, and touching it again faults page by page on the host. Writing 2 GiB into the page
// cache took 0.4 s of system CPU right after a 2 GiB file was deleted and 3.8-4.1 s after
// 15 s of rest. A command that starts right after the previous one's output was removed
// writes into warm pages, and if it finishes within ~2 s it never sees a cold one; so the
// order of the runs decided who paid. Where a dataset is large, the runs wait until the
// memory freed by the last removal has gone back (SETTLE_SECONDS): every tool starts cold,
// as a fresh job's pod would on such a VM.

/** Enough for freed memory to be reported to the host (reporting delay 2 s, then the work). */
export const SETTLE_SECONDS = 5;
let lastRemovalAt = 0;

/** Waits until `seconds` have passed since the last removal of an output. */
export async function settleAfterRemoval(seconds: number): Promise<void> {
  const wait = lastRemovalAt + seconds * 1000 - performance.now();
  if (seconds > 0 && wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

/** Outputs with at least this many files are kept until the end. */
export const MANY_FILES = 2000;
const keptOutputs: string[] = [];

/** Removes an output now, or (with `files` >= MANY_FILES) at the end (removeKeptOutputs). */
export async function disposeOutput(dir: string, files: number): Promise<void> {
  if (files >= MANY_FILES) keptOutputs.push(dir);
  else {
    await rm(dir, { recursive: true, force: true });
    lastRemovalAt = performance.now();
  }
}

/** Removes the outputs kept so far (at the end of a benchmark). */
export async function removeKeptOutputs(): Promise<void> {
  if (keptOutputs.length) log(`bench: removing ${keptOutputs.length} kept outputs…`);
  for (const dir of keptOutputs.splice(0)) await rm(dir, { recursive: true, force: true });
}

/** Whether `dir` is on an ext4 filesystem without a journal (see above). */
export function ext4WithoutJournal(dir: string): boolean {
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

export function noJournalNote(dir: string): string[] {
  return ext4WithoutJournal(dir)
    ? [
        `Filesystem: ${dir} is on ext4 without a journal, whose inode allocator is slow for a long time (3000 s) after many files were deleted (see "Removing outputs" in bench/common.ts): outputs with ≥ ${MANY_FILES} files are kept until the end of the benchmark; deletions by other processes in that window still slow every command that creates many files.`,
      ]
    : [];
}

// ---------------------------------------------------------------------------------------------
// Checking what a command wrote (outside the timed part)

/** Every file under `dir`, less dsfetch's metadata (`.dsfetch/`: manifests, locks). */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .filter((p) => !relative(dir, p).split("/").includes(".dsfetch"));
}

export function md5File(path: string): string {
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

/** What `dsfetch fetch --json` says about each dataset. */
export interface DsfetchJson {
  name?: string;
  path?: string;
  bytes?: number;
  seconds?: number;
  cached?: boolean;
  verification?: Record<string, number>;
  retries?: number;
  refetchedBytes?: number;
  error?: { code?: string; message?: string };
}

export function parseDsfetch(stdout: string): DsfetchJson | undefined {
  try {
    const parsed = JSON.parse(stdout) as { datasets?: DsfetchJson[] };
    return parsed.datasets?.[0];
  } catch {
    return undefined;
  }
}

export function verificationText(j: DsfetchJson): string {
  return Object.entries(j.verification ?? {})
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

export function median(values: number[]): number {
  const s = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function fmt(n: number | undefined, digits = 2): string {
  return n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits);
}

export function fmtBytes(n: number): string {
  if (n >= GiB && n % GiB === 0) return `${n / GiB} GiB`;
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

/** Bytes in the largest binary unit that keeps the number >= 1, two decimals. */
export function fmtAmount(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "-";
  if (n >= GiB) return `${fmt(n / GiB)} GiB`;
  if (n >= MiB) return `${fmt(n / MiB)} MiB`;
  if (n >= 1024) return `${fmt(n / 1024)} KiB`;
  return `${n} B`;
}

/** 20000 → "20,000". */
export function fmtCount(n: number): string {
  return n.toLocaleString("en-US");
}

/** A Markdown table cell: a literal "|" would end it. */
export function md(text: string): string {
  return text.replace(/\|/g, "\\|");
}

export function mdTable(header: string[], rows: string[][]): string {
  return [
    `| ${header.map(md).join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.map(md).join(" | ")} |`),
  ].join("\n");
}

/** The median (and spread) of a row's good runs (ok, output right). */
export interface Summary {
  ok: number;
  wall: number;
  min: number;
  max: number;
  /** wall + the `sync -f` after it */
  durable: number;
  cpu: number;
  /** The largest ru_maxrss over runs. */
  rss: number;
  /** The largest sum of the concurrent processes' ru_maxrss over runs. */
  rssSum: number;
  sync: number;
  other: number;
  /** Median bytes the S3 server sent per run. */
  sentBytes: number;
  /** The S3 requests of the last good run. */
  requests: Record<string, number> | undefined;
  /** Median wall of each step by name. */
  steps: Map<string, number>;
  /** Median exit time of the first process of the last step (many workers at once). */
  firstExit: number;
}

export function summarize(runs: readonly RunResult[]): Summary | undefined {
  const ok = runs.filter((r) => r.ok && r.check === undefined);
  if (ok.length === 0) return undefined;
  const walls = ok.map((r) => r.wallSeconds);
  const steps = new Map<string, number>();
  for (const name of ok[0]?.steps.map((s) => s.name) ?? [])
    steps.set(
      name,
      median(ok.map((r) => r.steps.find((s) => s.name === name)?.wallSeconds ?? Number.NaN)),
    );
  const maxOf = (values: (number | undefined)[]): number =>
    Math.max(...values.map((v) => v ?? Number.NaN));
  return {
    ok: ok.length,
    wall: median(walls),
    min: Math.min(...walls),
    max: Math.max(...walls),
    durable: median(ok.map((r) => r.wallSeconds + r.syncSeconds)),
    cpu: median(ok.map((r) => r.cpuSeconds ?? Number.NaN)),
    rss: maxOf(ok.map((r) => r.peakRssMiB)),
    rssSum: maxOf(ok.map((r) => r.rssSumMiB)),
    sync: median(ok.map((r) => r.syncSeconds)),
    other: median(ok.map((r) => r.otherCores ?? Number.NaN)),
    sentBytes: median(ok.map((r) => r.served?.sentBytes ?? Number.NaN)),
    requests: ok.at(-1)?.served?.requests,
    steps,
    firstExit: median(
      ok.map((r) => Math.min(...(r.steps.at(-1)?.procs ?? []).map((p) => p.exitAtSeconds))),
    ),
  };
}

/** "12.34 (11.00-13.50)" */
export function wallText(s: Summary): string {
  return `${fmt(s.wall)} (${fmt(s.min)}-${fmt(s.max)})`;
}

// ---------------------------------------------------------------------------------------------
// The summary table of bench/all.ts: one row per scenario, dsfetch against each peer

export interface SummaryCell {
  seconds: number;
  rssMiB: number | undefined;
  /** What ran, when it is not simply the tool (e.g. "cp + tar -xzf"). */
  what?: string;
}

export interface SummaryRow {
  scenario: string;
  cells: Partial<Record<ToolName, SummaryCell>>;
  /** Another yardstick (the decompressor alone, one download for many workers). */
  reference?: SummaryCell & { what: string };
  note?: string;
}

export function summaryCell(
  s: Summary | undefined,
  what?: string,
  rssSum = false,
): SummaryCell | undefined {
  if (!s) return undefined;
  const cell: SummaryCell = { seconds: s.wall, rssMiB: rssSum ? s.rssSum : s.rss };
  if (what !== undefined) cell.what = what;
  return cell;
}

function cellText(c: SummaryCell | undefined): string {
  if (!c) return "-";
  return `${fmt(c.seconds)} s, ${fmt(c.rssMiB, 0)} MiB${c.what ? ` (${c.what})` : ""}`;
}

export function renderSummaryTable(
  rows: readonly SummaryRow[],
  tools: readonly ToolName[],
): string {
  const peers = tools.filter((t): t is PeerName => t !== "dsfetch");
  const name = (t: ToolName): string => (t === "aws" ? "aws-cli" : t);
  const header = [
    "scenario",
    "dsfetch: median s, peak RSS",
    ...peers.map(name),
    ...peers.map((p) => `dsfetch / ${name(p)}`),
    "reference",
    "dsfetch / reference",
    "notes",
  ];
  const lines = rows.map((row) => {
    const mine = row.cells.dsfetch;
    const ratio = (other: SummaryCell | undefined): string =>
      mine && other ? fmt(mine.seconds / other.seconds) : "-";
    return [
      row.scenario,
      cellText(mine),
      ...peers.map((p) => cellText(row.cells[p])),
      ...peers.map((p) => ratio(row.cells[p])),
      row.reference ? `${cellText({ ...row.reference, what: "" })} (${row.reference.what})` : "-",
      ratio(row.reference),
      row.note ?? "",
    ];
  });
  return mdTable(header, lines);
}

/** What a section hands to bench/all.ts. */
export interface SectionResult {
  /** Markdown: the section's heading, tables and notes. */
  markdown: string;
  summary: SummaryRow[];
  /** A run failed or an output was wrong. */
  failed: boolean;
}

// ---------------------------------------------------------------------------------------------
// What the results are stamped with

/** A digest of every file under src/, to tell whether dsfetch changed while it was measured. */
export function sourceDigest(): string {
  const hash = createHash("sha256");
  const dir = join(repoRoot, "src");
  const files = readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const f of files) hash.update(`${relative(dir, f)}\0`).update(readFileSync(f));
  return hash.digest("hex").slice(0, 12);
}

/** The commit being measured, and whether the work tree had uncommitted changes in src/. */
export function sourceRevision(): string {
  const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  if (head.status !== 0) return "unknown commit (not a git checkout)";
  const dirty = spawnSync("git", ["status", "--porcelain", "--", "src"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  const changed = dirty.status === 0 && dirty.stdout.trim() !== "";
  return `commit ${head.stdout.trim()}${changed ? " + uncommitted changes in src/" : ""}`;
}

export function packageVersion(): string {
  try {
    return `v${(JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version}`;
  } catch {
    return "source";
  }
}

/** Tracks src/ over a benchmark: the line to print, warning when it changed meanwhile. */
export function sourceTracker(): { stamp: () => string } {
  const atStart = sourceDigest();
  return {
    stamp: () => {
      const atEnd = sourceDigest();
      if (atEnd !== atStart)
        log(`bench: WARNING: src/ changed while the benchmark ran (${atStart} → ${atEnd})`);
      return `dsfetch source: ${sourceRevision()} (src/ digest ${atStart}${atEnd === atStart ? "" : `; **src/ changed during the run, now ${atEnd}: the dsfetch runs may mix versions**`}), built to dist/ and run by node ${process.version}.`;
    },
  };
}

export function machineDescription(): string {
  return `${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? "?"}), ${fmt(totalmem() / GiB, 1)} GiB RAM`;
}

/** The command line that reproduces a run. */
export function reproduce(script: string, argv: readonly string[]): string {
  return `npx node ${script}${argv.length ? ` ${argv.join(" ")}` : ""}`;
}
