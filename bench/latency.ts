// Benchmark (not a test, not part of `npm run bench`): many small objects from an S3 server with
// the latency of a real one. Real S3 answers each request in 10-50 ms; the local MinIO the other
// benchmarks use answers in well under one. For a folder of many small objects the time is then
// bound by the requests in flight, which loopback never shows. Here a TCP proxy
// (bench/latency-proxy, Go, standard library only, built once into the cache directory) sits in
// front of the local S3 server and forwards every chunk a client sends --delay late (responses
// at once): every request takes at least --delay. Timed through the proxy, each into a fresh
// directory, in the same run (order rotated from run to run):
//
//   dsfetch          `node bin/dsfetch.js fetch --datasets - --storage-root <dir> --team bench --json`
//                    of s3://<bucket>/<prefix>/, its default concurrency
//   dsfetch, 32      the same with DSFETCH_OBJECT_CONCURRENCY=32 (the old default)
//   s5cmd            `s5cmd --endpoint-url <proxy> --log error cp 's3://<bucket>/<prefix>/*' <dir>/`
//   rclone           `rclone copy bench:<bucket>/<prefix>/ <dir> --transfers 32 --checkers 32`
//   aws (--tools)    `aws s3 cp --recursive`, s3.max_concurrent_requests = 32
//
//   npm run bench:latency -- [--delay 20ms] [--count 20000] [--size 16Ki] [--dirs 0] [--runs 1]
//                            [--tools dsfetch,s5cmd,rclone] [--dir <os tmpdir>] [--idle-wait 30]
//                            [--ignore-other-bench] [--keep]
//
// The S3 server: test/harness/s3-server.ts (MinIO built from source once per machine, or
// DSFETCH_TEST_S3_ENDPOINT). The objects (random bytes, generated once under
// <dir>/dsfetch-latency-data/ and kept there) are uploaded with s5cmd straight to the server,
// not through the proxy, into s3://dsfetch-latency/small-<count>x<size>/ (with --dirs N, spread
// over N directories d<k>/ of it, -d<N> added to the name: a folder a listing goes through
// directory by directory, src/fetch/list-tree.ts); a server that already
// holds them there (DSFETCH_TEST_S3_ENDPOINT) is not sent them again. Outputs are checked (file
// count, every file's size, total bytes) outside the timed part, so a failed download is never
// reported as fast. A Markdown table goes to stdout, logs to stderr; exit status 1 when a run
// failed or an output was wrong.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import { cacheRoot, findGo } from "../test/harness/minio-binary.ts";
import { type S3Server, startS3Server } from "../test/harness/s3-server.ts";
import {
  buildDsfetch,
  checkInterrupted,
  disposeOutput,
  dsfetchEntry,
  fmt,
  fmtBytes,
  fmtCount,
  installSignalHandlers,
  listArg,
  listFiles,
  log,
  machineDescription,
  mdTable,
  measure,
  median,
  noJournalNote,
  type Proc,
  parseDsfetch,
  parseSizeArg,
  type RunResult,
  removeKeptOutputs,
  repoRoot,
  reproduce,
  runMain,
  sourceTracker,
  state,
  type ToolName,
  UsageError,
  waitForIdle,
  wholeArg,
} from "./common.ts";
import {
  AWS_CLI_CONCURRENCY,
  RCLONE_TRANSFERS,
  setupTools,
  type ToolSetup,
  toolLabel,
} from "./session.ts";

const SCRIPT = "bench/latency.ts";
const NPM_SCRIPT = "bench:latency";
const TOOLS = ["dsfetch", "s5cmd", "rclone", "aws"] as const satisfies readonly ToolName[];
const BUCKET = "dsfetch-latency";
/** dsfetch's object concurrency before it was raised, for the second dsfetch row. */
const OLD_OBJECT_CONCURRENCY = 32;
const PROXY_DIR = join(repoRoot, "bench", "latency-proxy");

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  delayMs: number;
  count: number;
  /** Directories the objects are spread over (0: all in the folder itself). */
  dirs: number;
  size: number;
  runs: number;
  tools: ToolName[];
  /** Parent of the bench directory (outputs, logs) and of the data cache. */
  dir: string;
  idleWait: number;
  ignoreOtherBench: boolean;
  keep: boolean;
}

const USAGE = `usage: npx node ${SCRIPT} [--delay 20ms] [--count 20000] [--size 16Ki] [--dirs 0] [--runs 1]
        [--tools dsfetch,s5cmd,rclone] (also: aws) [--dir DIR] [--idle-wait 30]
        [--ignore-other-bench] [--keep]
(values shown are the defaults; --dir defaults to $DSFETCH_BENCH_DIR, else the OS temp dir)`;

/** "20ms", "0.02s", "20" (milliseconds). */
function parseDelay(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text);
  if (!m) throw new UsageError(`--delay ${text}: expected milliseconds, e.g. 20ms or 0.02s`);
  const ms = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  if (ms > 10_000) throw new UsageError(`--delay ${text}: at most 10 s`);
  return ms;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = {
    delayMs: 20,
    count: 20_000,
    dirs: 0,
    size: 16 * 1024,
    runs: 1,
    tools: ["dsfetch", "s5cmd", "rclone"],
    dir: process.env.DSFETCH_BENCH_DIR || tmpdir(),
    idleWait: 30,
    ignoreOtherBench: false,
    keep: false,
  };
  try {
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i] as string;
      if (arg === "-h" || arg === "--help") {
        console.log(USAGE);
        process.exit(0);
      }
      const eq = arg.indexOf("=");
      const flag = eq > 0 ? arg.slice(0, eq) : arg;
      const value = (): string => {
        if (eq > 0) return arg.slice(eq + 1);
        const v = argv[++i];
        if (v === undefined) throw new UsageError(`${flag} needs a value`);
        return v;
      };
      switch (flag) {
        case "--delay":
          o.delayMs = parseDelay(value());
          break;
        case "--count":
          o.count = wholeArg(flag, value(), 1, 1_000_000);
          break;
        case "--dirs":
          o.dirs = wholeArg(flag, value(), 0, 100_000);
          break;
        case "--size":
          o.size = parseSizeArg(flag, value());
          break;
        case "--runs":
          o.runs = wholeArg(flag, value(), 1);
          break;
        case "--tools":
          o.tools = listArg(flag, value(), TOOLS);
          break;
        case "--dir":
          o.dir = value();
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
        default:
          throw new UsageError(`unknown argument ${arg}`);
      }
    }
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${e.message}\n${USAGE}`);
    throw e;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The proxy

/** bench/latency-proxy built into the cache directory; rebuilt when its source is newer. */
function proxyBinary(): string {
  const binary = join(cacheRoot(), "latency-proxy", "latency-proxy");
  const sources = ["main.go", "go.mod"].map((f) => statSync(join(PROXY_DIR, f)).mtimeMs);
  if (existsSync(binary) && statSync(binary).mtimeMs >= Math.max(...sources)) return binary;
  const go = findGo();
  if (!go) throw new Error(`no Go toolchain to build bench/latency-proxy into ${binary}`);
  log(`latency: building bench/latency-proxy → ${binary}…`);
  mkdirSync(join(cacheRoot(), "latency-proxy"), { recursive: true });
  const tmp = `${binary}.tmp-${process.pid}`;
  const built = spawnSync(go, ["build", "-o", tmp, "."], {
    cwd: PROXY_DIR,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, CGO_ENABLED: "0" },
  });
  if (built.status !== 0) throw new Error("go build of bench/latency-proxy failed");
  renameSync(tmp, binary); // atomic: another run sees no binary or a whole one
  return binary;
}

interface Proxy {
  url: string;
  pid: number;
  /** Connections accepted so far, and the most open at once since the last call. */
  stats(): Promise<{ conns: number; max: number } | undefined>;
  stop(): void;
}

/** Starts the proxy in front of `endpoint` and waits for the port it listens on. */
async function startProxy(binary: string, endpoint: string, delayMs: number): Promise<Proxy> {
  const target = new URL(endpoint);
  const port = target.port || (target.protocol === "https:" ? "443" : "80");
  const child: ChildProcess = spawn(
    binary,
    ["-target", `${target.hostname}:${port}`, "-delay", `${delayMs}ms`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  process.on("exit", kill); // never leave it behind
  const lines: string[] = [];
  const waiters: ((line: string | undefined) => void)[] = [];
  let partial = "";
  child.stdout?.on("data", (c: Buffer) => {
    partial += c.toString("utf8");
    const parts = partial.split("\n");
    partial = parts.pop() ?? "";
    for (const line of parts) {
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  child.on("close", () => {
    for (const w of waiters.splice(0)) w(undefined);
  });
  const nextLine = (timeoutMs: number): Promise<string | undefined> => {
    const ready = lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        resolve(undefined);
      }, timeoutMs);
      const done = (line: string | undefined): void => {
        clearTimeout(timer);
        resolve(line);
      };
      waiters.push(done);
    });
  };
  const first = await nextLine(10_000);
  if (!first || !/^\d+$/.test(first) || !child.pid) {
    kill();
    throw new Error(`bench/latency-proxy did not start (first line: ${first ?? "none"})`);
  }
  const pid = child.pid;
  return {
    url: `${target.protocol}//127.0.0.1:${first}`,
    pid,
    stats: async () => {
      try {
        process.kill(pid, "SIGUSR1");
      } catch {
        return undefined;
      }
      const line = await nextLine(5_000);
      const m = /^stats conns=(\d+) active=\d+ max=(\d+)$/.exec(line ?? "");
      return m ? { conns: Number(m[1]), max: Number(m[2]) } : undefined;
    },
    stop: () => {
      kill();
      process.off("exit", kill);
    },
  };
}

/** CPU seconds (user+sys) a process has used so far. */
function processCpu(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .map(Number);
    return ((f[11] ?? 0) + (f[12] ?? 0)) / 100;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The data: generated once (kept), uploaded with s5cmd straight to the server

/** s5cmd straight to the server; `--log error` hides `ls`'s output (printed at level info). */
function s5cmdDirect(s5cmd: string, server: S3Server, args: string[], quiet = true) {
  const level = quiet ? ["--log", "error"] : [];
  return spawnSync(s5cmd, ["--endpoint-url", server.endpoint, ...level, ...args], {
    env: toolEnv(server, server.endpoint),
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
}

/** Objects under `prefix` now: how many, and how many have `size` bytes. */
function listed(s5cmd: string, server: S3Server, prefix: string, size: number) {
  const r = s5cmdDirect(s5cmd, server, ["ls", `s3://${BUCKET}/${prefix}*`], false);
  if (r.status !== 0) {
    log(`latency: no objects there yet (s5cmd ls: ${(r.stderr || r.stdout).trim().slice(0, 160)})`);
    return { count: 0, right: 0 };
  }
  const lines = r.stdout.split("\n").filter((l) => l.trim() && !l.includes(" DIR "));
  const right = lines.filter((l) => Number(l.trim().split(/\s+/).at(-2)) === size).length;
  return { count: lines.length, right };
}

async function ensureData(o: Options, s5cmd: string, server: S3Server): Promise<string> {
  const layout = `${o.count}x${o.size}${o.dirs > 0 ? `-d${o.dirs}` : ""}`;
  const prefix = `small-${layout}/`;
  const have = listed(s5cmd, server, prefix, o.size);
  if (have.count === o.count && have.right === o.count) {
    log(`latency: s3://${BUCKET}/${prefix} already holds the ${fmtCount(o.count)} objects`);
    return prefix;
  }
  // Generated once and kept: deleting many files slows file creation on this machine's ext4
  // for long after (see "Removing outputs" in bench/common.ts).
  const cache = join(o.dir, "dsfetch-latency-data");
  const local = join(cache, layout);
  const complete = `${local}.complete`;
  if (!existsSync(complete)) {
    log(`latency: generating ${fmtCount(o.count)} files of ${fmtBytes(o.size)} in ${local}…`);
    await rm(local, { recursive: true, force: true });
    mkdirSync(local, { recursive: true });
    const width = String(o.count - 1).length;
    const dirWidth = String(Math.max(0, o.dirs - 1)).length;
    for (let i = 0; i < o.count; i++) {
      const dir =
        o.dirs > 0 ? join(local, `d${String(i % o.dirs).padStart(dirWidth, "0")}`) : local;
      if (i < o.dirs) mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${String(i).padStart(width, "0")}.bin`), randomBytes(o.size));
    }
    writeFileSync(complete, "");
  }
  const mb = s5cmdDirect(s5cmd, server, ["mb", `s3://${BUCKET}`]);
  if (mb.status !== 0 && !/already/i.test(mb.stderr + mb.stdout))
    throw new Error(`s5cmd mb s3://${BUCKET} failed: ${mb.stderr || mb.stdout}`);
  const t = performance.now();
  log(`latency: uploading to s3://${BUCKET}/${prefix} with s5cmd (not through the proxy)…`);
  const cp = s5cmdDirect(s5cmd, server, ["cp", `${local}/*`, `s3://${BUCKET}/${prefix}`]);
  if (cp.status !== 0) throw new Error(`uploading failed: ${cp.stderr || cp.stdout}`);
  const now = listed(s5cmd, server, prefix, o.size);
  if (now.count !== o.count || now.right !== o.count)
    throw new Error(
      `after the upload s3://${BUCKET}/${prefix} holds ${now.count} objects (${now.right} of ${o.size} bytes), expected ${o.count}`,
    );
  log(
    `latency: uploaded ${fmtCount(o.count)} objects in ${fmt((performance.now() - t) / 1000, 1)}s`,
  );
  spawnSync("sync");
  return prefix;
}

// ---------------------------------------------------------------------------------------------
// The rows and their commands

interface Row {
  key: string;
  label: string;
  tool: ToolSetup;
  extraEnv: Record<string, string>;
  runs: RunResult[];
  /** Per good run: the proxy's and the S3 server's CPU seconds, the most connections at once. */
  proxyCpu: number[];
  serverCpu: number[];
  maxConns: number[];
  problems: string[];
}

/** The environment of every command: the server's credentials, `endpoint`, no user config. */
function toolEnv(server: S3Server, endpoint: string, benchDir?: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    LANG: "C.UTF-8",
    TERM: "dumb",
    TMPDIR: tmpdir(),
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: server.region,
    AWS_DEFAULT_REGION: server.region,
    AWS_EC2_METADATA_DISABLED: "true",
    ...(benchDir
      ? {
          AWS_CONFIG_FILE: join(benchDir, "aws-config"),
          AWS_SHARED_CREDENTIALS_FILE: join(benchDir, "no-credentials-file"),
          RCLONE_CONFIG: join(benchDir, "rclone.conf"), // empty: the remote comes from env
          RCLONE_CONFIG_BENCH_TYPE: "s3",
          RCLONE_CONFIG_BENCH_PROVIDER: "Minio",
          RCLONE_CONFIG_BENCH_ENDPOINT: endpoint,
          RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: server.accessKeyId,
          RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: server.secretAccessKey,
          RCLONE_CONFIG_BENCH_REGION: server.region,
        }
      : {}),
  };
}

interface Ctx {
  server: S3Server;
  proxy: Proxy;
  benchDir: string;
  prefix: string;
  datasetsFile: string;
}

function rowProc(ctx: Ctx, row: Row, outDir: string): Proc {
  const bin = row.tool.peer.ok ? row.tool.peer.path : "";
  const env = { ...toolEnv(ctx.server, ctx.proxy.url, ctx.benchDir), ...row.extraEnv };
  const src = `${BUCKET}/${ctx.prefix}`;
  switch (row.tool.name) {
    case "dsfetch":
      return {
        argv: [
          bin,
          dsfetchEntry,
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
        stdinFile: ctx.datasetsFile,
      };
    case "s5cmd":
      return {
        argv: [
          bin,
          "--endpoint-url",
          ctx.proxy.url,
          "--log",
          "error",
          "cp",
          `s3://${src}*`,
          `${outDir}/`,
        ],
        env,
      };
    case "rclone":
      return {
        argv: [
          bin,
          "copy",
          `bench:${src}`,
          outDir,
          "--transfers",
          String(RCLONE_TRANSFERS),
          "--checkers",
          String(RCLONE_TRANSFERS),
        ],
        env,
      };
    case "aws":
      return {
        argv: [
          bin,
          "s3",
          "cp",
          `s3://${src}`,
          outDir,
          "--recursive",
          "--endpoint-url",
          ctx.proxy.url,
          "--only-show-errors",
          "--no-progress",
        ],
        env,
      };
  }
}

/** The command line as text: node, bin/dsfetch.js, <dir>, $PROXY, programs by basename. */
function procText(ctx: Ctx, row: Row, proc: Proc): string {
  const env = Object.entries(row.extraEnv).map(([k, v]) => `${k}=${v} `);
  const args = proc.argv.map((a) => {
    if (a === process.execPath) return "node";
    if (a === dsfetchEntry) return "bin/dsfetch.js";
    if (a.startsWith(ctx.benchDir)) return a.endsWith("/") ? "<dir>/" : "<dir>";
    const text = a.replaceAll(ctx.proxy.url, "$PROXY");
    if (text.startsWith("/")) return basename(text);
    return text.includes("*") ? `'${text}'` : text;
  });
  const stdin = proc.stdinFile ? ` < ${readFileSync(proc.stdinFile, "utf8")}` : "";
  return `${env.join("")}AWS_ENDPOINT_URL=$PROXY ${args.join(" ")}${stdin}`;
}

/** Undefined when `dir` holds `count` files of `size` bytes; else what is wrong. */
function checkOutput(dir: string, count: number, size: number): string | undefined {
  const files = listFiles(dir);
  let total = 0;
  let wrong = 0;
  for (const f of files) {
    const n = statSync(f).size;
    total += n;
    if (n !== size) wrong++;
  }
  if (files.length !== count || wrong > 0 || total !== count * size)
    return `${files.length} files, ${total} bytes (${wrong} not ${size} bytes); expected ${count} files, ${count * size} bytes`;
  return undefined;
}

/** GNU time and the tools (s5cmd always: it uploads), with the settings of this benchmark. */
function setupLatencyTools(names: readonly ToolName[]): Promise<Map<ToolName, ToolSetup>> {
  return setupTools(
    [...new Set<ToolName>([...names, "s5cmd"])],
    {
      dsfetch: "",
      s5cmd: "defaults otherwise (--numworkers 256: up to 256 requests in flight)",
      rclone:
        "the remote `bench:` from RCLONE_CONFIG_BENCH_* (type s3, provider Minio, endpoint $PROXY)",
      aws: `s3.max_concurrent_requests = ${AWS_CLI_CONCURRENCY} in a temporary AWS_CONFIG_FILE`,
    },
    "latency",
  );
}

/** dsfetch's default objects in flight, from the dist/ just built. */
async function dsfetchObjectConcurrency(): Promise<number | undefined> {
  try {
    const mod = (await import(
      pathToFileURL(join(repoRoot, "dist", "config", "tuning.js")).href
    )) as { DEFAULT_TUNING?: { objectConcurrency?: number } };
    return mod.DEFAULT_TUNING?.objectConcurrency;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  state.waitForOtherBench = !o.ignoreOtherBench;
  installSignalHandlers();
  const started = performance.now();
  const source = sourceTracker();
  if (o.tools.includes("dsfetch")) buildDsfetch();
  const defaultConcurrency = o.tools.includes("dsfetch")
    ? await dsfetchObjectConcurrency()
    : undefined;
  const tools = await setupLatencyTools(o.tools);
  const s5cmd = tools.get("s5cmd")?.peer;
  if (!s5cmd?.ok)
    throw new Error(`s5cmd is needed for the upload: ${s5cmd?.ok === false ? s5cmd.reason : "?"}`);
  const binary = proxyBinary();

  await mkdir(o.dir, { recursive: true });
  const benchDir = await mkdtemp(join(o.dir, "dsfetch-latency-"));
  log(`latency: directory ${benchDir}; node ${process.version}`);
  let server: S3Server | undefined;
  let proxy: Proxy | undefined;
  try {
    server = await startS3Server({ label: "dsfetch latency bench", log });
    const pidMatch = /pid (\d+)/.exec(server.description);
    if (pidMatch) state.serverPid = Number(pidMatch[1]);
    checkInterrupted();
    const setupStarted = performance.now();
    const prefix = await ensureData(o, s5cmd.path, server);
    const setupSeconds = (performance.now() - setupStarted) / 1000;
    checkInterrupted();
    proxy = await startProxy(binary, server.endpoint, o.delayMs);
    log(`latency: proxy ${proxy.url} → ${server.endpoint}, +${o.delayMs} ms per client chunk`);

    await writeFile(
      join(benchDir, "aws-config"),
      `[default]\nregion = ${server.region}\ns3 =\n    max_concurrent_requests = ${AWS_CLI_CONCURRENCY}\n`,
    );
    await writeFile(join(benchDir, "rclone.conf"), "");
    const datasetsFile = join(benchDir, "datasets.json");
    await writeFile(datasetsFile, JSON.stringify([{ uri: `s3://${BUCKET}/${prefix}` }]));
    const ctx: Ctx = { server, proxy, benchDir, prefix, datasetsFile };

    const rows: Row[] = [];
    const addRow = (key: string, label: string, name: ToolName, extraEnv = {}): void => {
      const tool = tools.get(name);
      if (tool)
        rows.push({
          key,
          label,
          tool,
          extraEnv,
          runs: [],
          proxyCpu: [],
          serverCpu: [],
          maxConns: [],
          problems: [],
        });
    };
    for (const name of o.tools) {
      const tool = tools.get(name);
      const label = tool ? toolLabel(tool) : name;
      if (name === "dsfetch") {
        addRow(
          "dsfetch",
          `${label} (default: ${defaultConcurrency ?? "?"} objects in flight)`,
          name,
        );
        if (defaultConcurrency !== OLD_OBJECT_CONCURRENCY)
          addRow(
            `dsfetch-c${OLD_OBJECT_CONCURRENCY}`,
            `${label}, DSFETCH_OBJECT_CONCURRENCY=${OLD_OBJECT_CONCURRENCY}`,
            name,
            { DSFETCH_OBJECT_CONCURRENCY: String(OLD_OBJECT_CONCURRENCY) },
          );
      } else addRow(name, label, name);
    }

    for (let run = 0; run < o.runs; run++) {
      const order = rows.map((_, i) => rows[(i + run) % rows.length] as Row);
      for (const row of order) {
        checkInterrupted();
        if (!row.tool.peer.ok) continue;
        const outDir = join(benchDir, `out-${row.key}-${run + 1}`);
        await mkdir(outDir, { recursive: true });
        const proc = rowProc(ctx, row, outDir);
        await proxy.stats(); // resets the maximum
        // Idle first, so that the CPU read around measure() is the run's (measure() then finds
        // the machine idle at its first look, 2 s).
        spawnSync("sync");
        await waitForIdle(o.idleWait);
        const cpuBefore = processCpu(proxy.pid);
        const serverBefore = state.serverPid ? processCpu(state.serverPid) : undefined;
        const r = await measure([{ name: "fetch", procs: [proc] }], {
          logBase: join(benchDir, `log-${row.key}-${run + 1}`),
          syncPath: outDir,
          idleWait: o.idleWait,
        });
        const cpuAfter = processCpu(proxy.pid);
        const serverAfter = state.serverPid ? processCpu(state.serverPid) : undefined;
        const serverCpu =
          serverBefore !== undefined && serverAfter !== undefined
            ? serverAfter - serverBefore
            : Number.NaN;
        const stats = await proxy.stats();
        const proxyCpu =
          cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : Number.NaN;
        if (r.otherCores !== undefined && Number.isFinite(proxyCpu))
          r.otherCores = Math.max(0, r.otherCores - proxyCpu / r.wallSeconds);
        if (r.ok) {
          r.check = checkOutput(outDir, o.count, o.size);
          if (row.tool.name === "dsfetch") {
            const j = parseDsfetch(r.procs[0]?.stdout ?? "");
            if (!j) r.check ??= `--json output not understood: ${r.procs[0]?.stdout.slice(0, 200)}`;
            else if (j.error) r.check ??= `dsfetch error ${j.error.code}: ${j.error.message}`;
            else if (j.retries || j.refetchedBytes)
              row.problems.push(
                `run ${run + 1}: ${j.retries} retries, ${j.refetchedBytes} bytes refetched`,
              );
          }
          if (r.check) row.problems.push(`run ${run + 1}: output wrong: ${r.check}`);
        } else row.problems.push(`run ${run + 1}: ${r.failure}`);
        if (r.ok && !r.check) {
          row.proxyCpu.push(proxyCpu);
          row.serverCpu.push(serverCpu);
          row.maxConns.push(stats?.max ?? Number.NaN);
        }
        row.runs.push(r);
        log(
          `latency: ${row.label} run ${run + 1}/${o.runs}: ${r.ok ? "ok" : `FAILED (${r.failure})`} ${fmt(r.wallSeconds)}s, CPU ${fmt(r.cpuSeconds, 1)}s, peak RSS ${fmt(r.peakRssMiB, 0)} MiB, proxy CPU ${fmt(proxyCpu, 1)}s, S3 server CPU ${fmt(serverCpu, 1)}s, max connections ${stats?.max ?? "?"}, other processes ${fmt(r.otherCores)} cores${r.check ? `; OUTPUT WRONG: ${r.check}` : r.ok ? "; output count and sizes match" : ""}`,
        );
        await disposeOutput(outDir, o.count);
      }
    }

    const elapsed = (performance.now() - started) / 1000;
    const failed = rows.some((r) => r.problems.length > 0 || r.runs.some((x) => !x.ok));
    const out = [
      "",
      `### ${fmtCount(o.count)} objects of ${fmtBytes(o.size)}${o.dirs > 0 ? ` in ${fmtCount(o.dirs)} directories` : ""} through a proxy adding ${o.delayMs} ms per request (${o.runs} run${o.runs > 1 ? "s" : ""} each, median)`,
      "",
      renderTable(rows, o),
      "",
      `Reproduce: \`${reproduce(SCRIPT, argv)}\` (from the repository root; or \`npm run ${NPM_SCRIPT}${argv.length ? ` -- ${argv.join(" ")}` : ""}\`; ${fmt(elapsed / 60, 1)} min here, of which ${fmt(setupSeconds / 60, 1)} min preparing the data).`,
      source.stamp(),
      `Machine: ${machineDescription()}; S3 = ${server.description.replace(/ at http\S+, pid \d+/, "")} on loopback, sharing the CPUs, behind bench/latency-proxy (Go; every chunk a client sends is forwarded ${o.delayMs} ms after it arrived, in order; responses at once): every request takes at least ${o.delayMs} ms, so a tool with N requests in flight gets at most N / ${o.delayMs} ms requests per second.`,
      ...noJournalNote(benchDir),
      "",
      "Commands:",
      "",
      ...rows
        .filter((r) => r.tool.peer.ok)
        .map((r) => {
          const p = rowProc(ctx, r, join(benchDir, "out"));
          return `- ${r.label}: \`${procText(ctx, r, p)}\`${r.tool.settings ? `; ${r.tool.settings}` : ""}`;
        }),
      "",
      `Wall = spawn to exit; objects/s = ${fmtCount(o.count)} / wall; CPU = user+sys of the tool and peak RSS = ru_maxrss (GNU time \`-f "%M %U %S"\`); dsfetch / this < 1: the default dsfetch is faster than that row. Max connections = the most client connections open at once through the proxy during the run (HTTP/1.1: at most one request in flight each); ≈ in flight = ${fmtCount(o.count)} × ${o.delayMs} ms / wall, the average number of requests in flight that the time implies (Little's law, each GET taking at least the delay). Proxy CPU and S3 server CPU = user+sys of the proxy and of the S3 server during the run (a 2 s idle check, the run, a \`sync -f\`; neither is in "CPU"): with the tool's CPU, what the machine's ${cpus().length} CPUs had to do, against ${cpus().length} × wall available; other load = CPU used by processes other than the tool, the S3 server, the proxy and the bench, in cores (before each run the bench waits up to ${o.idleWait} s for an idle machine). Every output is checked after the run (file count, each file's size, total bytes) and each tool writes a fresh directory under ${o.dir}; outputs are removed at the end (see "Removing outputs" in bench/common.ts). dsfetch syncs its files before it exits (syncfs), the peers do not.`,
      "",
    ].join("\n");
    console.log(out);
    await writeFile(join(benchDir, "results.md"), out);
    return failed ? 1 : 0;
  } finally {
    proxy?.stop();
    await server?.stop();
    await removeKeptOutputs();
    if (o.keep) log(`latency: kept ${benchDir}`);
    else await rm(benchDir, { recursive: true, force: true });
  }
}

function renderTable(rows: Row[], o: Options): string {
  const header = [
    "tool",
    "median wall s",
    "objects/s",
    "CPU s (user+sys)",
    "peak RSS MiB",
    "dsfetch / this",
    "max connections",
    "≈ in flight",
    "proxy CPU s",
    "S3 server CPU s",
    "other load, cores",
    "notes",
  ];
  const good = (r: Row): RunResult[] => r.runs.filter((x) => x.ok && x.check === undefined);
  const mine = rows.find((r) => r.key === "dsfetch");
  const mineWall = mine ? median(good(mine).map((x) => x.wallSeconds)) : Number.NaN;
  const lines = rows.map((row) => {
    if (!row.tool.peer.ok)
      return [row.label, `unavailable: ${row.tool.peer.reason}`, ...Array<string>(10).fill("")];
    const ok = good(row);
    if (ok.length === 0)
      return [
        row.label,
        `failed ${row.runs.length}/${row.runs.length}`,
        ...Array<string>(9).fill(""),
        row.problems.join("; "),
      ];
    const walls = ok.map((x) => x.wallSeconds);
    const wall = median(walls);
    const spread = ok.length > 1 ? ` (${fmt(Math.min(...walls))}-${fmt(Math.max(...walls))})` : "";
    return [
      row.label,
      `${fmt(wall)}${spread}`,
      fmt(o.count / wall, 0),
      fmt(median(ok.map((x) => x.cpuSeconds ?? Number.NaN)), 1),
      fmt(Math.max(...ok.map((x) => x.peakRssMiB ?? Number.NaN)), 0),
      row === mine ? "-" : fmt(mineWall / wall),
      fmt(median(row.maxConns), 0),
      fmt((o.count * o.delayMs) / 1000 / wall, 0),
      fmt(median(row.proxyCpu), 1),
      fmt(median(row.serverCpu), 1),
      fmt(median(ok.map((x) => x.otherCores ?? Number.NaN))),
      row.problems.length ? `**${row.problems.join("; ")}**` : "",
    ];
  });
  return mdTable(header, lines);
}

if (import.meta.main) runMain(main);
