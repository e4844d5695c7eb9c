// Benchmark (not a test): dsfetch against s5cmd, the AWS CLI and rclone, downloading the same
// data from the same local S3 server (MinIO, via test/harness/s3-server.ts) in the same run.
//
//   npx node bench/fetch.ts [--runs N] [--datasets big,small] [--tools dsfetch,s5cmd,aws,rclone]
//                           [--big-size 2Gi] [--part-size 8Mi] [--small-count 20000]
//                           [--small-size 16Ki] [--idle-wait SECONDS] [--keep]
//
// Datasets (uploaded once per run of this script):
//   big    one object of random bytes, multipart-uploaded in --part-size parts (default 8 MiB,
//          the AWS CLI's and boto3's default multipart chunk size, so the common ETag shape)
//   small  --small-count objects of --small-size random bytes under one prefix (plain PUTs,
//          64 in flight, signed here with SigV4 over keep-alive node:http)
// Each tool writes into a fresh directory under the bench directory ($DSFETCH_BENCH_DIR, else
// the OS temp dir, which is where MinIO keeps its data too: one filesystem). Between runs the
// output is removed and `sync` run, so no run inherits another's dirty pages. The page cache is
// NOT dropped: MinIO serves from memory (what a fast remote store looks like to the client).
//
// Per tool: median wall time (spawn to exit, measured here), rate, user+sys CPU and peak RSS
// (GNU time `-f %M`: ru_maxrss of the tool's process, the largest of its process tree), the time
// of a `sync -f` of the output right after the tool exits (dsfetch makes its tree durable before
// it exits, the peers do not), and dsfetch/peer. A Markdown table goes to stdout, logs to stderr.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, createHmac, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
} from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { type S3Server, startS3Server } from "../test/harness/s3-server.ts";
import {
  ensureAwsCli,
  ensureGnuTime,
  ensureRclone,
  ensureS5cmd,
  type PeerResult,
  S5CMD_VERSION,
} from "./peers.ts";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const MiB = 1024 * 1024;
const AWS_CLI_CONCURRENCY = 32;
const RCLONE_TRANSFERS = 32;
const RCLONE_STREAMS = 8;
const UPLOAD_CONCURRENCY = 64;
const RUN_TIMEOUT_MS = 10 * 60_000;
/**
 * A run during which other processes used more than this many cores is repeated (once), if it
 * was shorter than REPEAT_MAX_SECONDS (the AWS CLI's 2-minute runs are only marked, to keep the
 * whole benchmark near 15 minutes).
 */
const DISTURBED_CORES = 0.25;
const REPEAT_MAX_SECONDS = 60;
/** Seconds the whole benchmark may spend waiting for an idle machine. */
const IDLE_BUDGET_SECONDS = 120;

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

// ---------------------------------------------------------------------------------------------
// Options

type ToolName = "dsfetch" | "s5cmd" | "aws" | "rclone";
type DatasetName = "big" | "small";
const ALL_TOOLS: readonly ToolName[] = ["dsfetch", "s5cmd", "aws", "rclone"];
const ALL_DATASETS: readonly DatasetName[] = ["big", "small"];

interface Options {
  runs: number;
  tools: ToolName[];
  datasets: DatasetName[];
  bigSize: number;
  partSize: number;
  smallCount: number;
  smallSize: number;
  keep: boolean;
  idleWait: number;
}

const USAGE = `usage: node bench/fetch.ts [--runs N] [--datasets big,small] [--tools ${ALL_TOOLS.join(",")}]
                          [--big-size 2Gi] [--part-size 8Mi] [--small-count 20000] [--small-size 16Ki]
                          [--idle-wait 60] [--keep]`;

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

class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    runs: 3,
    tools: [...ALL_TOOLS],
    datasets: [...ALL_DATASETS],
    bigSize: 2 * 1024 * MiB,
    partSize: 8 * MiB,
    smallCount: 20_000,
    smallSize: 16 * 1024,
    keep: false,
    idleWait: 60,
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
      case "--runs": {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1)
          throw new UsageError(`--runs ${v}: expected a whole number >= 1`);
        opts.runs = Number(v);
        break;
      }
      case "--tools":
        opts.tools = listArg(flag, value(), ALL_TOOLS);
        break;
      case "--datasets":
        opts.datasets = listArg(flag, value(), ALL_DATASETS);
        break;
      case "--big-size":
        opts.bigSize = parseSizeArg(flag, value());
        break;
      case "--part-size":
        opts.partSize = parseSizeArg(flag, value());
        if (opts.partSize < 5 * MiB)
          throw new UsageError("--part-size must be at least 5Mi (S3's minimum)");
        break;
      case "--small-count":
        opts.smallCount = parseSizeArg(flag, value());
        break;
      case "--small-size":
        opts.smallSize = parseSizeArg(flag, value());
        break;
      case "--idle-wait": {
        const v = value();
        if (!/^\d+$/.test(v)) throw new UsageError(`--idle-wait ${v}: expected whole seconds`);
        opts.idleWait = Number(v);
        break;
      }
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

function listArg<T extends string>(flag: string, text: string, allowed: readonly T[]): T[] {
  const items = text.split(",").filter(Boolean);
  for (const item of items) {
    if (!allowed.includes(item as T))
      throw new UsageError(`${flag}: unknown ${item}; expected some of ${allowed.join(",")}`);
  }
  if (items.length === 0)
    throw new UsageError(`${flag} needs at least one of ${allowed.join(",")}`);
  return allowed.filter((a) => items.includes(a));
}

// ---------------------------------------------------------------------------------------------
// Upload (plain PUTs with SigV4, UNSIGNED-PAYLOAD; the multipart upload through the SDK)

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

function encodePath(key: string): string {
  return key
    .split("/")
    .map((s) =>
      encodeURIComponent(s).replace(
        /[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      ),
    )
    .join("/");
}

/** Signs a path-style PUT with an unsigned payload. */
function signedPutHeaders(
  server: S3Server,
  host: string,
  path: string,
  length: number,
): Record<string, string> {
  const amzDate = new Date()
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const payload = "UNSIGNED-PAYLOAD";
  const canonical = [
    "PUT",
    path,
    "",
    `host:${host}`,
    `x-amz-content-sha256:${payload}`,
    `x-amz-date:${amzDate}`,
    "",
    "host;x-amz-content-sha256;x-amz-date",
    payload,
  ].join("\n");
  const scope = `${day}/${server.region}/s3/aws4_request`;
  const toSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    scope,
    createHash("sha256").update(canonical).digest("hex"),
  ].join("\n");
  const kDate = hmac(`AWS4${server.secretAccessKey}`, day);
  const kSigning = hmac(hmac(hmac(kDate, server.region), "s3"), "aws4_request");
  const signature = createHmac("sha256", kSigning).update(toSign).digest("hex");
  return {
    host,
    "content-length": String(length),
    "x-amz-content-sha256": payload,
    "x-amz-date": amzDate,
    authorization: `AWS4-HMAC-SHA256 Credential=${server.accessKeyId}/${scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${signature}`,
  };
}

function putRaw(
  server: S3Server,
  agent: Agent,
  bucket: string,
  key: string,
  body: Buffer,
): Promise<void> {
  const url = new URL(server.endpoint);
  const path = `/${bucket}/${encodePath(key)}`;
  const headers = signedPutHeaders(server, url.host, path, body.length);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        protocol: url.protocol,
        hostname: url.hostname,
        port: url.port,
        method: "PUT",
        path,
        headers,
        agent,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode === 200) resolve();
          else
            reject(
              new Error(
                `PUT ${path}: HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString("utf8").slice(0, 300)}`,
              ),
            );
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

interface BigInfo {
  key: string;
  size: number;
  etag: string;
  md5: string;
  parts: number;
}

async function uploadBig(s3: S3Client, bucket: string, opts: Options): Promise<BigInfo> {
  const key = "big.bin";
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  );
  if (!UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
  const partCount = Math.ceil(opts.bigSize / opts.partSize);
  const whole = createHash("md5");
  const etags: string[] = new Array(partCount);
  // Parts are generated (and hashed) in order; up to 4 uploads in flight.
  let inFlight: Promise<void>[] = [];
  for (let n = 1; n <= partCount; n++) {
    const size = Math.min(opts.partSize, opts.bigSize - (n - 1) * opts.partSize);
    const body = randomBytes(size);
    whole.update(body);
    const upload = s3
      .send(
        new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n, Body: body }),
      )
      .then((out) => {
        if (!out.ETag) throw new Error(`UploadPart ${n} returned no ETag`);
        etags[n - 1] = out.ETag;
      });
    inFlight.push(upload);
    if (inFlight.length >= 4) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  const out = await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
    }),
  );
  const etag = (out.ETag ?? "").replace(/"/g, "");
  return { key, size: opts.bigSize, etag, md5: whole.digest("hex"), parts: partCount };
}

interface SmallInfo {
  prefix: string;
  count: number;
  size: number;
  /** basename → md5 hex */
  md5: Map<string, string>;
}

async function uploadSmall(server: S3Server, bucket: string, opts: Options): Promise<SmallInfo> {
  const prefix = "small/";
  const agent = new Agent({ keepAlive: true, maxSockets: UPLOAD_CONCURRENCY });
  const md5 = new Map<string, string>();
  const width = String(opts.smallCount - 1).length;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= opts.smallCount) return;
      const name = `${String(i).padStart(width, "0")}.bin`;
      const body = randomBytes(opts.smallSize);
      md5.set(name, createHash("md5").update(body).digest("hex"));
      await putRaw(server, agent, bucket, prefix + name, body);
    }
  };
  try {
    await Promise.all(
      Array.from({ length: Math.min(UPLOAD_CONCURRENCY, opts.smallCount) }, worker),
    );
  } finally {
    agent.destroy();
  }
  return { prefix, count: opts.smallCount, size: opts.smallSize, md5 };
}

// ---------------------------------------------------------------------------------------------
// Running one tool once

interface Invocation {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdinFile?: string;
  /** The directory the tool writes into (created fresh, removed after). */
  outDir: string;
}

interface RunResult {
  ok: boolean;
  exitCode: number | null;
  wallSeconds: number;
  /** sync -f of the output right after the tool exited */
  syncSeconds: number;
  cpuSeconds: number | undefined;
  peakRssMiB: number | undefined;
  /** Cores' worth of CPU used by other processes (not the tool, MinIO or this script) meanwhile. */
  otherCores: number | undefined;
  /** The machine was not idle before the run (waited --idle-wait seconds in vain). */
  startedBusy?: boolean;
  stdout: string;
  stderrTail: string;
  failure?: string;
}

let currentChild: ChildProcess | undefined;
let interrupted = false;

/** Kills the tool and everything it started (GNU time runs it as a child: its own group). */
function killTree(child: ChildProcess | undefined): void {
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

// ---------------------------------------------------------------------------------------------
// What else the machine is doing: CPU used by processes other than the tool, MinIO and this
// script (another test suite on the same 2 cores ruins a measurement).

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Busy CPU seconds of the whole machine since boot (all but idle and iowait). */
function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - (f[3] ?? 0) - (f[4] ?? 0)) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** CPU seconds of one process and its reaped children. */
function processCpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .map(Number);
    // fields 14-17 of stat(5): utime stime cutime cstime (index 11-14 after the comm field)
    return ((f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0)) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface LoadMark {
  busy: number | undefined;
  server: number;
  self: number;
}

let serverPid: number | undefined;

function loadMark(): LoadMark {
  return {
    busy: machineBusySeconds(),
    server: processCpuSeconds(serverPid),
    self: selfCpuSeconds(),
  };
}

/** CPU seconds used from `from` to `to` by processes other than MinIO, this script and `excluded`. */
function foreignCpu(from: LoadMark, to: LoadMark, excluded: number): number | undefined {
  if (from.busy === undefined || to.busy === undefined) return undefined;
  return Math.max(
    0,
    to.busy - from.busy - (to.server - from.server) - (to.self - from.self) - excluded,
  );
}

/** Cores' worth of CPU that other processes may use while the machine counts as idle. */
const IDLE_CORES = 0.15;

/**
 * Waits until other processes use less than IDLE_CORES (sampled over 2 s), at most
 * `maxSeconds`. Returns the load seen last (cores) and whether it was idle.
 */
async function waitForIdle(
  perRunSeconds: number,
): Promise<{ idle: boolean; cores: number | undefined }> {
  const maxSeconds = Math.min(perRunSeconds, idleBudgetSeconds);
  const begun = performance.now();
  const deadline = begun + maxSeconds * 1000;
  try {
    return await waitUntil(deadline, maxSeconds);
  } finally {
    idleBudgetSeconds = Math.max(0, idleBudgetSeconds - (performance.now() - begun) / 1000);
  }
}

/** Seconds the whole benchmark may still spend waiting for an idle machine. */
let idleBudgetSeconds = IDLE_BUDGET_SECONDS;

async function waitUntil(
  deadline: number,
  maxSeconds: number,
): Promise<{ idle: boolean; cores: number | undefined }> {
  let announced = false;
  for (;;) {
    const mark = loadMark();
    await sleep(2_000);
    const foreign = foreignCpu(mark, loadMark(), 0);
    if (foreign === undefined) return { idle: true, cores: undefined };
    const cores = foreign / 2;
    if (cores < IDLE_CORES) return { idle: true, cores };
    if (interrupted || performance.now() > deadline) return { idle: false, cores };
    if (!announced) {
      log(
        `bench: waiting (up to ${maxSeconds}s) for other processes to stop using the CPUs (now ${fmt(cores)} cores)…`,
      );
      announced = true;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function runOnce(
  inv: Invocation,
  gnuTime: string | undefined,
  logBase: string,
): Promise<RunResult> {
  const timeFile = `${logBase}.time`;
  const outFile = `${logBase}.stdout`;
  const errFile = `${logBase}.stderr`;
  const [bin, ...args] = gnuTime
    ? [gnuTime, "-o", timeFile, "-f", "%M %U %S", ...inv.argv]
    : (inv.argv as [string, ...string[]]);
  const stdinFd = openSync(inv.stdinFile ?? "/dev/null", "r");
  const outFd = openSync(outFile, "w");
  const errFd = openSync(errFile, "w");
  const mark = loadMark();
  const started = performance.now();
  let exitCode: number | null;
  let spawnError: string | undefined;
  try {
    exitCode = await new Promise<number | null>((resolve) => {
      const child = spawn(bin as string, args, {
        env: inv.env,
        stdio: [stdinFd, outFd, errFd],
        detached: true, // its own process group, so a kill reaches the tool under GNU time
      });
      currentChild = child;
      const timer = setTimeout(() => {
        spawnError = `timed out after ${RUN_TIMEOUT_MS / 1000}s`;
        killTree(child);
      }, RUN_TIMEOUT_MS);
      child.on("error", (e) => {
        spawnError = String(e);
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
  const endMark = loadMark();
  const syncStarted = performance.now();
  if (existsSync(inv.outDir)) spawnSync("sync", ["-f", inv.outDir]);
  const syncSeconds = (performance.now() - syncStarted) / 1000;

  let cpuSeconds: number | undefined;
  let peakRssMiB: number | undefined;
  if (gnuTime && existsSync(timeFile)) {
    // GNU time writes "Command exited with non-zero status N" before the format line.
    const last = readFileSync(timeFile, "utf8").trim().split("\n").at(-1) ?? "";
    const m = /^(\d+) ([\d.]+) ([\d.]+)$/.exec(last);
    if (m) {
      peakRssMiB = Number(m[1]) / 1024;
      cpuSeconds = Number(m[2]) + Number(m[3]);
    }
  }
  // Over the tool's own time only (the sync's kernel writeback would count as foreign CPU).
  const foreign = foreignCpu(mark, endMark, cpuSeconds ?? 0);
  const otherCores = foreign === undefined ? undefined : foreign / wallSeconds;
  const stdout = readFileSync(outFile, "utf8");
  const stderrTail = readFileSync(errFile, "utf8").trim().split("\n").slice(-5).join("\n");
  const ok = exitCode === 0 && spawnError === undefined;
  const result: RunResult = {
    ok,
    exitCode,
    wallSeconds,
    syncSeconds,
    cpuSeconds,
    peakRssMiB,
    otherCores,
    stdout,
    stderrTail,
  };
  if (!ok)
    result.failure = spawnError ?? `exit ${exitCode}: ${stderrTail.split("\n").at(-1) ?? ""}`;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Checking what a tool wrote (outside the timed part)

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && !join(e.parentPath, e.name).includes("/.dsfetch/"))
    .map((e) => join(e.parentPath, e.name));
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

/** Undefined when the output is right; else what is wrong. `deep` also compares MD5s. */
function checkOutput(
  dataset: DatasetName,
  outDir: string,
  big: BigInfo | undefined,
  small: SmallInfo | undefined,
  deep: boolean,
): string | undefined {
  const files = listFiles(outDir);
  if (dataset === "big" && big) {
    const found = files.filter((f) => f.endsWith(`/${big.key}`));
    if (found.length !== 1)
      return `expected one ${big.key}, found ${files.length} files (${files
        .slice(0, 3)
        .map((f) => relative(outDir, f))
        .join(", ")})`;
    const path = found[0] as string;
    const size = statSync(path).size;
    if (size !== big.size) return `${relative(outDir, path)}: ${size} bytes, expected ${big.size}`;
    if (deep && md5File(path) !== big.md5)
      return `${relative(outDir, path)}: MD5 differs from the uploaded bytes`;
    return undefined;
  }
  if (dataset === "small" && small) {
    if (files.length !== small.count) return `${files.length} files, expected ${small.count}`;
    let bad = 0;
    let first = "";
    for (const path of files) {
      const name = path.slice(path.lastIndexOf("/") + 1);
      const expected = small.md5.get(name);
      const wrong =
        expected === undefined ||
        statSync(path).size !== small.size ||
        (deep && createHash("md5").update(readFileSync(path)).digest("hex") !== expected);
      if (wrong) {
        bad++;
        first ||= relative(outDir, path);
      }
    }
    return bad ? `${bad} files wrong or unexpected (first: ${first})` : undefined;
  }
  return "dataset not uploaded";
}

// ---------------------------------------------------------------------------------------------
// The tools

interface ToolSetup {
  name: ToolName;
  peer: PeerResult;
  /** How it is configured, for the notes. */
  settings: string;
  /** Median wall time of the tool's version command: its start-up cost. */
  startupSeconds?: number;
}

/** The command that prints the tool's version: a start-up cost floor. */
function versionArgv(tool: ToolSetup): string[] {
  if (!tool.peer.ok) return [];
  const bin = tool.peer.path;
  switch (tool.name) {
    case "dsfetch":
      return [bin, join(repoRoot, "src", "cli", "entry.ts"), "version"];
    case "s5cmd":
      return [bin, "version"];
    case "aws":
      return [bin, "--version"];
    case "rclone":
      return [bin, "version"];
  }
}

function measureStartup(tool: ToolSetup, env: NodeJS.ProcessEnv): number | undefined {
  const [bin, ...args] = versionArgv(tool);
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

interface Context {
  server: S3Server;
  bucket: string;
  benchDir: string;
  awsConfigFile: string;
  big?: BigInfo;
  small?: SmallInfo;
}

function baseEnv(ctx: Context): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    LANG: "C.UTF-8",
    TERM: "dumb",
    TMPDIR: tmpdir(),
    AWS_ACCESS_KEY_ID: ctx.server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: ctx.server.secretAccessKey,
    AWS_REGION: ctx.server.region,
    AWS_DEFAULT_REGION: ctx.server.region,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: ctx.awsConfigFile,
    AWS_SHARED_CREDENTIALS_FILE: join(ctx.benchDir, "no-credentials-file"),
  };
}

async function invocation(
  tool: ToolSetup,
  dataset: DatasetName,
  ctx: Context,
  outDir: string,
): Promise<Invocation> {
  if (!tool.peer.ok) throw new Error("unavailable tool");
  const bin = tool.peer.path;
  const ep = ctx.server.endpoint;
  const b = ctx.bucket;
  const env = baseEnv(ctx);
  const bigKey = ctx.big?.key ?? "big.bin";
  const prefix = ctx.small?.prefix ?? "small/";
  switch (tool.name) {
    case "dsfetch": {
      const uri = dataset === "big" ? `s3://${b}/${bigKey}` : `s3://${b}/${prefix}`;
      const stdinFile = join(ctx.benchDir, `datasets-${dataset}.json`);
      await writeFile(stdinFile, JSON.stringify([{ uri }]));
      env.AWS_ENDPOINT_URL = ep;
      return {
        argv: [
          bin,
          join(repoRoot, "src", "cli", "entry.ts"),
          "fetch",
          "--datasets",
          "-",
          "--storage-root",
          outDir,
          "--team",
          "bench",
          "--json",
        ],
        env,
        stdinFile,
        outDir,
      };
    }
    case "s5cmd": {
      const src = dataset === "big" ? `s3://${b}/${bigKey}` : `s3://${b}/${prefix}*`;
      return {
        argv: [bin, "--endpoint-url", ep, "--log", "error", "cp", src, `${outDir}/`],
        env,
        outDir,
      };
    }
    case "aws": {
      const common = ["--endpoint-url", ep, "--only-show-errors", "--no-progress"];
      const argv =
        dataset === "big"
          ? [bin, "s3", "cp", `s3://${b}/${bigKey}`, join(outDir, bigKey), ...common]
          : [bin, "s3", "cp", `s3://${b}/${prefix}`, outDir, "--recursive", ...common];
      return { argv, env, outDir };
    }
    case "rclone": {
      Object.assign(env, rcloneEnv(ctx));
      const flags = [
        "--transfers",
        String(RCLONE_TRANSFERS),
        "--checkers",
        String(RCLONE_TRANSFERS),
      ];
      const argv =
        dataset === "big"
          ? [
              bin,
              "copy",
              `bench:${b}/${bigKey}`,
              outDir,
              ...flags,
              "--multi-thread-streams",
              String(RCLONE_STREAMS),
            ]
          : [bin, "copy", `bench:${b}/${prefix}`, outDir, ...flags];
      return { argv, env, outDir };
    }
  }
}

function rcloneEnv(ctx: Context): NodeJS.ProcessEnv {
  return {
    RCLONE_CONFIG: join(ctx.benchDir, "rclone.conf"), // empty file: the remote comes from env
    RCLONE_CONFIG_BENCH_TYPE: "s3",
    RCLONE_CONFIG_BENCH_PROVIDER: "Minio",
    RCLONE_CONFIG_BENCH_ENDPOINT: ctx.server.endpoint,
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: ctx.server.accessKeyId,
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: ctx.server.secretAccessKey,
    RCLONE_CONFIG_BENCH_REGION: ctx.server.region,
  };
}

/**
 * Does rclone check a hash on this dataset? One untimed `rclone copy -vv` of one object, and
 * its debug log is read: rclone logs "md5 = … OK" when it compared, and says so when it could
 * not (a multipart ETag is not an MD5, so there is nothing to compare with).
 */
function rcloneHashProbe(tool: ToolSetup, dataset: DatasetName, ctx: Context): string {
  if (!tool.peer.ok) return "";
  const out = join(ctx.benchDir, `rclone-probe-${dataset}`);
  const key =
    dataset === "big"
      ? (ctx.big?.key ?? "big.bin")
      : `${ctx.small?.prefix ?? "small/"}${[...(ctx.small?.md5.keys() ?? [])][0]}`;
  const r = spawnSync(
    tool.peer.path,
    [
      "copy",
      `bench:${ctx.bucket}/${key}`,
      out,
      "-vv",
      "--multi-thread-streams",
      String(RCLONE_STREAMS),
    ],
    { env: { ...baseEnv(ctx), ...rcloneEnv(ctx) }, encoding: "utf8", maxBuffer: 64 * MiB },
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

// ---------------------------------------------------------------------------------------------
// Statistics and the table

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

interface Row {
  dataset: DatasetName;
  tool: ToolSetup;
  runs: RunResult[];
  check: string[];
  integrity: string;
  /** Runs repeated because other processes used the CPUs meanwhile. */
  repeated: number;
}

function fmt(n: number | undefined, digits = 2): string {
  return n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits);
}

function dsfetchVerification(
  stdout: string,
): { text: string; retries: number; refetched: number } | undefined {
  try {
    const parsed = JSON.parse(stdout) as unknown;
    const list = (
      Array.isArray(parsed) ? parsed : ((parsed as { datasets?: unknown[] }).datasets ?? [])
    ) as Record<string, unknown>[];
    const entry = list[0];
    if (!entry) return undefined;
    const v = entry.verification;
    const text =
      v && typeof v === "object"
        ? Object.entries(v as Record<string, number>)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ")
        : String(v);
    return {
      text,
      retries: Number(entry.retries ?? 0),
      refetched: Number(entry.refetchedBytes ?? 0),
    };
  } catch {
    return undefined;
  }
}

function renderTable(rows: Row[], ctx: Context, opts: Options): string {
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
  const emptyCells = ` |${" |".repeat(header.length - 3)}`;
  const lines = [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`];
  for (const dataset of opts.datasets) {
    const ds = rows.filter((r) => r.dataset === dataset);
    const mine = ds.find((r) => r.tool.name === "dsfetch");
    const mineOk = mine?.runs.filter((r) => r.ok) ?? [];
    const mineWall = mineOk.length ? median(mineOk.map((r) => r.wallSeconds)) : undefined;
    const mineDurable = mineOk.length
      ? median(mineOk.map((r) => r.wallSeconds + r.syncSeconds))
      : undefined;
    const label =
      dataset === "big"
        ? `1 × ${fmtBytes(ctx.big?.size ?? opts.bigSize)} (${ctx.big?.parts ?? "?"} parts of ${fmtBytes(opts.partSize)})`
        : `${ctx.small?.count ?? opts.smallCount} × ${fmtBytes(ctx.small?.size ?? opts.smallSize)}`;
    for (const row of ds) {
      const name = `${row.tool.name === "aws" ? "aws-cli" : row.tool.name}${row.tool.peer.ok ? ` ${shortVersion(row.tool)}` : ""}`;
      if (!row.tool.peer.ok) {
        lines.push(`| ${label} | ${name} | unavailable: ${row.tool.peer.reason}${emptyCells}`);
        continue;
      }
      const ok = row.runs.filter((r) => r.ok);
      const failed = row.runs.length - ok.length;
      if (ok.length === 0) {
        lines.push(
          `| ${label} | ${name} | failed ${failed}/${row.runs.length}: ${row.runs[0]?.failure ?? "?"}${emptyCells}`,
        );
        continue;
      }
      const walls = ok.map((r) => r.wallSeconds);
      const wall = median(walls);
      const durable = median(ok.map((r) => r.wallSeconds + r.syncSeconds));
      const rate =
        dataset === "big"
          ? `${fmt((ctx.big?.size ?? 0) / MiB / wall, 0)} MiB/s`
          : `${fmt((ctx.small?.count ?? 0) / wall, 0)} obj/s`;
      const cpu = median(ok.map((r) => r.cpuSeconds ?? Number.NaN));
      const rss = Math.max(...ok.map((r) => r.peakRssMiB ?? Number.NaN));
      const sync = median(ok.map((r) => r.syncSeconds));
      const isMine = row.tool.name === "dsfetch";
      const ratio = isMine || mineWall === undefined ? "-" : fmt(mineWall / wall);
      const ratioDurable = isMine || mineDurable === undefined ? "-" : fmt(mineDurable / durable);
      const problems = [
        ...(failed
          ? [`${failed} of ${row.runs.length} runs failed: ${row.runs.find((r) => !r.ok)?.failure}`]
          : []),
        ...row.check,
      ];
      lines.push(
        `| ${label} | ${name} | ${fmt(wall)} (${fmt(Math.min(...walls))}-${fmt(Math.max(...walls))}) | ${rate} | ${fmt(cpu, 1)} | ${fmt(rss, 0)} | ${fmt(sync)} | ${ratio} | ${ratioDurable} | ${fmt(row.tool.startupSeconds)} | ${fmt(median(ok.map((r) => r.otherCores ?? Number.NaN)))}${row.repeated ? ` (${row.repeated} repeated)` : ""}${ok.some((r) => r.startedBusy) ? " (busy)" : ""} | ${row.integrity}${problems.length ? `; **${problems.join("; ")}**` : ""} |`,
      );
    }
  }
  return lines.join("\n");
}

function shortVersion(tool: ToolSetup): string {
  if (!tool.peer.ok) return "";
  const v = tool.peer.version;
  const m = /v?\d+\.\d+(\.\d+)?[^\s]*/.exec(v);
  // s5cmd built here says `v2.3.0-module` (GitCommit "module", see peers.ts): the release is v2.3.0.
  return m ? m[0].replace(/-module$/, "") : v;
}

function fmtBytes(n: number): string {
  if (n >= 1024 * MiB && n % (1024 * MiB) === 0) return `${n / (1024 * MiB)} GiB`;
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
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
  const startedAll = performance.now();
  const srcAtStart = sourceDigest();
  const benchParent = process.env.DSFETCH_BENCH_DIR || tmpdir();
  await mkdir(benchParent, { recursive: true });
  const benchDir = await mkdtemp(join(benchParent, "dsfetch-bench-"));
  log(
    `bench: directory ${benchDir}; node ${process.version} (${process.execPath}); ${cpus().length} CPUs, ${fmt(totalmem() / 1024 ** 3, 1)} GiB RAM`,
  );

  const onSignal = (signal: NodeJS.Signals): void => {
    log(`bench: ${signal}: stopping`);
    interrupted = true;
    killTree(currentChild);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let server: S3Server | undefined;
  try {
    // Tools first: a fresh machine installs or builds them here (not timed).
    const gnuTimePeer = await ensureGnuTime(log);
    const gnuTime = gnuTimePeer.ok ? gnuTimePeer.path : undefined;
    if (!gnuTimePeer.ok) log(`bench: no peak RSS or CPU: ${gnuTimePeer.reason}`);
    const setups: ToolSetup[] = [];
    for (const name of opts.tools) {
      let peer: PeerResult;
      let settings = "";
      switch (name) {
        case "dsfetch": {
          const major = Number(process.versions.node.split(".")[0]);
          peer =
            major >= 22
              ? {
                  ok: true,
                  path: process.execPath,
                  version: `${readPackageVersion()} (node ${process.version})`,
                }
              : {
                  ok: false,
                  reason: `needs Node >= 22, this is ${process.version}: run through \`npx node\``,
                };
          settings =
            "defaults: 8 MiB ranges × 8 in flight per object, 32 objects in flight; verifies MD5 / multipart MD5; syncfs before publishing";
          break;
        }
        case "s5cmd":
          peer = await ensureS5cmd(log);
          settings = `${S5CMD_VERSION}, defaults (--numworkers 256, cp --concurrency 5, --part-size 50 MiB), --log error`;
          break;
        case "aws":
          peer = await ensureAwsCli(log);
          settings = `s3.max_concurrent_requests = ${AWS_CLI_CONCURRENCY} (temporary AWS_CONFIG_FILE), other s3 settings default (multipart_chunksize 8 MiB), --only-show-errors --no-progress`;
          break;
        case "rclone":
          peer = await ensureRclone(log);
          settings = `--transfers ${RCLONE_TRANSFERS} --checkers ${RCLONE_TRANSFERS}; big object also --multi-thread-streams ${RCLONE_STREAMS} (default cutoff 250 MiB); remote from RCLONE_CONFIG_BENCH_* (provider Minio)`;
          break;
      }
      if (peer.ok)
        log(`bench: ${name}: ${peer.path} (${peer.version})${peer.note ? `; ${peer.note}` : ""}`);
      else log(`bench: ${name}: unavailable: ${peer.reason}`);
      setups.push({ name, peer, settings });
    }

    server = await startS3Server({ label: "dsfetch bench", log });
    const pidMatch = /pid (\d+)/.exec(server.description);
    if (pidMatch) serverPid = Number(pidMatch[1]);
    else log("bench: the S3 server's pid is unknown: its CPU counts as other processes' load");
    const awsConfigFile = join(benchDir, "aws-config");
    await writeFile(
      awsConfigFile,
      `[default]\nregion = ${server.region}\ns3 =\n    max_concurrent_requests = ${AWS_CLI_CONCURRENCY}\n`,
    );
    await writeFile(join(benchDir, "rclone.conf"), "");
    const s3 = new S3Client({
      endpoint: server.endpoint,
      region: server.region,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    const bucket = `dsfetch-bench-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const ctx: Context = { server, bucket, benchDir, awsConfigFile };

    if (opts.datasets.includes("big")) {
      const t = performance.now();
      ctx.big = await uploadBig(s3, bucket, opts);
      log(
        `bench: uploaded s3://${bucket}/${ctx.big.key}: ${fmtBytes(ctx.big.size)} in ${ctx.big.parts} parts of ${fmtBytes(opts.partSize)}, ETag ${ctx.big.etag}, in ${fmt((performance.now() - t) / 1000, 1)}s`,
      );
    }
    if (opts.datasets.includes("small")) {
      const t = performance.now();
      ctx.small = await uploadSmall(server, bucket, opts);
      const secs = (performance.now() - t) / 1000;
      log(
        `bench: uploaded ${ctx.small.count} objects of ${fmtBytes(ctx.small.size)} under s3://${bucket}/${ctx.small.prefix} in ${fmt(secs, 1)}s (${fmt(ctx.small.count / secs, 0)} PUT/s, ${UPLOAD_CONCURRENCY} in flight)`,
      );
    }
    s3.destroy();
    spawnSync("sync");
    for (const tool of setups) {
      const startup = measureStartup(tool, { ...baseEnv(ctx), ...rcloneEnv(ctx) });
      if (startup !== undefined) tool.startupSeconds = startup;
    }

    const rows: Row[] = [];
    for (const dataset of opts.datasets) {
      const dsRows = setups.map((tool) => {
        const row: Row = { dataset, tool, runs: [], check: [], integrity: "", repeated: 0 };
        rows.push(row);
        return row;
      });
      for (let run = 0; run < opts.runs; run++) {
        // Rotate the order each run so no tool always goes first (or right after another).
        const order = dsRows.map((_, i) => dsRows[(i + run) % dsRows.length] as Row);
        for (const row of order) {
          if (interrupted) throw new Error("interrupted");
          if (!row.tool.peer.ok) continue;
          const outDir = join(benchDir, `out-${dataset}-${row.tool.name}-${run + 1}`);
          const logBase = join(benchDir, `log-${dataset}-${row.tool.name}-${run + 1}`);
          let r: RunResult | undefined;
          // A run during which other processes took the CPUs is repeated once.
          for (let attempt = 1; attempt <= 2; attempt++) {
            await rm(outDir, { recursive: true, force: true });
            await mkdir(outDir, { recursive: true });
            spawnSync("sync");
            const idle = await waitForIdle(opts.idleWait);
            const inv = await invocation(row.tool, dataset, ctx, outDir);
            r = await runOnce(inv, gnuTime, logBase);
            if (!idle.idle) r.startedBusy = true;
            if (interrupted) throw new Error("interrupted");
            const disturbed = (r.otherCores ?? 0) > DISTURBED_CORES;
            if (attempt === 1 && r.ok && disturbed && r.wallSeconds < REPEAT_MAX_SECONDS) {
              row.repeated++;
              log(
                `bench: ${dataset} ${row.tool.name} run ${run + 1}: ${fmt(r.wallSeconds)}s but other processes used ${fmt(r.otherCores)} cores meanwhile: repeating it`,
              );
              continue;
            }
            break;
          }
          if (!r) throw new Error("unreachable: no run");
          let check: string | undefined;
          if (r.ok) {
            check = checkOutput(dataset, outDir, ctx.big, ctx.small, run === 0);
            if (check) row.check.push(`run ${run + 1}: output wrong: ${check}`);
          }
          if (row.tool.name === "dsfetch" && r.ok) {
            const v = dsfetchVerification(r.stdout);
            if (v) {
              row.integrity = v.text;
              if (v.retries || v.refetched)
                row.check.push(
                  `run ${run + 1}: ${v.retries} retries, ${v.refetched} bytes refetched`,
                );
            } else {
              row.check.push(
                `run ${run + 1}: --json output not understood: ${r.stdout.slice(0, 200)}`,
              );
            }
          }
          log(
            `bench: ${dataset} ${row.tool.name} run ${run + 1}/${opts.runs}: ${r.ok ? "ok" : `FAILED (${r.failure})`} ${fmt(r.wallSeconds)}s, sync after ${fmt(r.syncSeconds)}s, CPU ${fmt(r.cpuSeconds, 1)}s, peak RSS ${fmt(r.peakRssMiB, 0)} MiB, other processes ${fmt(r.otherCores)} cores${check ? `; OUTPUT WRONG: ${check}` : r.ok ? (run === 0 ? "; output MD5s match" : "; output sizes match") : ""}`,
          );
          if (!r.ok) log(`bench:   stderr: ${r.stderrTail.replace(/\n/g, "\n          ")}`);
          row.runs.push(r);
          await rm(outDir, { recursive: true, force: true });
        }
      }
      for (const row of dsRows) {
        if (!row.tool.peer.ok) continue;
        if (row.tool.name === "s5cmd") row.integrity = "none (s5cmd does not verify downloads)";
        if (row.tool.name === "aws")
          row.integrity = "none (no MD5 check on download; objects carry no flexible checksum)";
        if (row.tool.name === "rclone") row.integrity = rcloneHashProbe(row.tool, dataset, ctx);
      }
    }

    const table = renderTable(rows, ctx, opts);
    const srcAtEnd = sourceDigest();
    const srcChanged = srcAtEnd !== srcAtStart;
    if (srcChanged)
      log(`bench: WARNING: src/ changed while the benchmark ran (${srcAtStart} → ${srcAtEnd})`);
    const elapsed = (performance.now() - startedAll) / 1000;
    const command = `npx node bench/fetch.ts${argv.length ? ` ${argv.join(" ")}` : ""}`;
    const out = [
      "",
      `### dsfetch fetch vs peers (${opts.runs} run${opts.runs > 1 ? "s" : ""} each, median)`,
      "",
      table,
      "",
      `Reproduce: \`${command}\` (from the repository root; ${fmt(elapsed / 60, 1)} min here).`,
      `dsfetch source: ${sourceRevision()} (src/ digest ${srcAtStart}), run from source by node ${process.version}.${srcChanged ? ` **src/ changed during this run (digest now ${srcAtEnd}): the dsfetch runs may mix versions.**` : ""}`,
      `Machine: ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? "?"}), ${fmt(totalmem() / 1024 ** 3, 1)} GiB RAM; S3 = ${server.description.replace(/ at http\S+, pid \d+/, "")} on loopback, sharing the CPUs.`,
      `Wall = spawn to exit; start-up = median wall of the tool's version command (5 runs); other load = median CPU used by processes other than the tool, MinIO and the bench during a run, in cores (a run under ${REPEAT_MAX_SECONDS} s above ${DISTURBED_CORES} is repeated once; before each run the bench waits up to ${opts.idleWait} s, ${IDLE_BUDGET_SECONDS} s in all, for the machine to be idle); "sync after" = \`sync -f\` of the output right after exit (dsfetch syncs before it exits; the peers leave dirty pages); CPU = user+sys and peak RSS = ru_maxrss, from GNU time \`-f "%M %U %S"\`. dsfetch/peer < 1: dsfetch is faster. Page cache not dropped: MinIO serves from memory; each tool writes a fresh directory on the same filesystem, removed and \`sync\`ed between runs. The bench checks every output (MD5 of every file in run 1, sizes after).`,
      "Settings:",
      ...setups.map(
        (s) => `- ${s.name}: ${s.settings}${s.peer.ok && s.peer.note ? `; ${s.peer.note}` : ""}`,
      ),
      "",
    ].join("\n");
    console.log(out);
    await writeFile(join(benchDir, "results.md"), out);
    return rows.some((r) => r.runs.some((x) => !x.ok) || r.check.length > 0) ? 1 : 0;
  } finally {
    if (server) await server.stop();
    if (opts.keep) log(`bench: kept ${benchDir}`);
    else await rm(benchDir, { recursive: true, force: true });
  }
}

/** A digest of every file under src/, to tell whether dsfetch changed while it was measured. */
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

/** The commit being measured, and whether the work tree had uncommitted changes in src/. */
function sourceRevision(): string {
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

function readPackageVersion(): string {
  try {
    return `v${(JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version}`;
  } catch {
    return "source";
  }
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
