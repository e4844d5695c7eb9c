// One benchmark session: the tools (dsfetch and the peers, found or installed by bench/peers.ts),
// the local S3 server (test/harness/s3-server.ts: MinIO built from source once per machine, or
// DSFETCH_TEST_S3_ENDPOINT) with one bucket, the bench directory, the environment every command
// runs with, the command lines of each tool, the S3 server's counters (bytes sent, requests), and
// the uploads of random test data. bench/all.ts opens one session for every section; each
// script run on its own opens its own.

import { spawnSync } from "node:child_process";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { basename, join, posix, relative } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { type S3Server, startS3Server } from "../test/harness/s3-server.ts";
import {
  type BenchOptions,
  buildDsfetch,
  type CounterSource,
  dsfetchEntry,
  fmt,
  fmtBytes,
  installSignalHandlers,
  listFiles,
  log,
  machineDescription,
  md5File,
  measureStartup,
  nodeTooOld,
  noJournalNote,
  type PeerName,
  type Proc,
  packageVersion,
  reproduce,
  type S3Counters,
  type SectionResult,
  sourceTracker,
  state,
  type ToolName,
} from "./common.ts";
import {
  ensureAwsCli,
  ensureGnuTime,
  ensureRclone,
  ensureS5cmd,
  type PeerResult,
  S5CMD_VERSION,
} from "./peers.ts";

export const AWS_CLI_CONCURRENCY = 32;
export const RCLONE_TRANSFERS = 32;
export const RCLONE_STREAMS = 8;
const UPLOAD_CONCURRENCY = 64;

export interface ToolSetup {
  name: ToolName;
  peer: PeerResult;
  /** How it is configured, for the notes. */
  settings: string;
  /** Median wall time of the tool's version command: its start-up cost. */
  startupSeconds?: number;
}

export interface Session {
  server: S3Server;
  bucket: string;
  /** Fresh directory for outputs and logs; on the filesystem of MinIO's data by default. */
  benchDir: string;
  awsConfigFile: string;
  tools: Map<ToolName, ToolSetup>;
  /** What the S3 server sent and answered so far, when it can be asked. */
  counters: CounterSource | undefined;
  countersHow: string;
}

// ---------------------------------------------------------------------------------------------
// The tools

/**
 * Finds or installs GNU time (for CPU and peak RSS) and every tool of `names`; `settings`
 * replaces the settings text of some (bench/latency.ts: its tools go through a proxy), and
 * `script` names the script in the log.
 */
export async function setupTools(
  names: readonly ToolName[],
  settingsFor: Partial<Record<ToolName, string>> = {},
  script = "bench",
): Promise<Map<ToolName, ToolSetup>> {
  const gnuTime = await ensureGnuTime(log);
  state.gnuTime = gnuTime.ok ? gnuTime.path : undefined;
  if (!gnuTime.ok) log(`${script}: no peak RSS or CPU: ${gnuTime.reason}`);
  const tools = new Map<ToolName, ToolSetup>();
  for (const name of names) {
    let peer: PeerResult;
    let settings = "";
    switch (name) {
      case "dsfetch": {
        const tooOld = nodeTooOld();
        peer = tooOld
          ? { ok: false, reason: tooOld }
          : {
              ok: true,
              path: process.execPath,
              version: `${packageVersion()} (node ${process.version})`,
            };
        settings =
          "`node bin/dsfetch.js fetch --datasets - --storage-root <dir> --team bench --json`, defaults: 8 MiB ranges × 8 in flight per object, 128 objects of a folder in flight (32 of those over 1 MiB); verifies MD5 / multipart MD5; syncfs before publishing";
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
        settings = `--transfers ${RCLONE_TRANSFERS} --checkers ${RCLONE_TRANSFERS}; one large object also --multi-thread-streams ${RCLONE_STREAMS} (default cutoff 250 MiB); remote from RCLONE_CONFIG_BENCH_* (provider Minio)`;
        break;
    }
    if (peer.ok)
      log(`${script}: ${name}: ${peer.path} (${peer.version})${peer.note ? `; ${peer.note}` : ""}`);
    else log(`${script}: ${name}: unavailable: ${peer.reason}`);
    tools.set(name, { name, peer, settings: settingsFor[name] ?? settings });
  }
  return tools;
}

/** The command that prints the tool's version: a start-up cost floor. */
function versionArgv(tool: ToolSetup): string[] {
  if (!tool.peer.ok) return [];
  const bin = tool.peer.path;
  switch (tool.name) {
    case "dsfetch":
      return [bin, dsfetchEntry, "version"];
    case "s5cmd":
      return [bin, "version"];
    case "aws":
      return [bin, "--version"];
    case "rclone":
      return [bin, "version"];
  }
}

/** "s5cmd v2.3.0", "aws-cli 1.45.11", "dsfetch v0.1.0". */
export function toolLabel(tool: ToolSetup): string {
  const name = tool.name === "aws" ? "aws-cli" : tool.name;
  if (!tool.peer.ok) return name;
  const v = tool.peer.version;
  const m = /v?\d+\.\d+(\.\d+)?[^\s]*/.exec(v);
  // s5cmd built here says `v2.3.0-module` (GitCommit "module", see peers.ts): the release is v2.3.0.
  return `${name} ${m ? m[0].replace(/-module$/, "") : v}`;
}

/** The tool's path, if it is available in this session. */
export function toolPath(session: Session, name: ToolName): string | undefined {
  const peer = session.tools.get(name)?.peer;
  return peer?.ok ? peer.path : undefined;
}

export function settingsNotes(session: Session): string[] {
  return [...session.tools.values()].map(
    (s) =>
      `- ${s.peer.ok ? toolLabel(s) : `${s.name} (unavailable: ${s.peer.reason})`}: ${s.settings}${s.peer.ok && s.peer.note ? `; ${s.peer.note}` : ""}${s.startupSeconds !== undefined ? `; start-up (version command) ${fmt(s.startupSeconds)} s` : ""}`,
  );
}

// ---------------------------------------------------------------------------------------------
// The session

/**
 * Installs or finds the tools, makes the bench directory, starts the S3 server and makes the
 * bucket. Close it with closeSession.
 */
export async function openSession(
  prefix: string,
  toolNames: readonly ToolName[],
): Promise<Session> {
  const benchParent = process.env.DSFETCH_BENCH_DIR || tmpdir();
  await mkdir(benchParent, { recursive: true });
  const benchDir = await mkdtemp(join(benchParent, `${prefix}-`));
  log(`bench: directory ${benchDir}; node ${process.version} (${process.execPath})`);
  let server: S3Server | undefined;
  try {
    // Tools first: a fresh machine installs or builds them here (not timed).
    if (toolNames.includes("dsfetch")) buildDsfetch();
    const tools = await setupTools(toolNames);
    server = await startS3Server({ label: "dsfetch bench", log });
    const pidMatch = /pid (\d+)/.exec(server.description);
    if (pidMatch) state.serverPid = Number(pidMatch[1]);
    else log("bench: the S3 server's pid is unknown: its CPU counts as other processes' load");
    const awsConfigFile = join(benchDir, "aws-config");
    await writeFile(
      awsConfigFile,
      `[default]\nregion = ${server.region}\ns3 =\n    max_concurrent_requests = ${AWS_CLI_CONCURRENCY}\n`,
    );
    await writeFile(join(benchDir, "rclone.conf"), "");
    const bucket = `dsfetch-bench-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
    const s3 = s3Client(server);
    try {
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      s3.destroy();
    }
    const counters = await serverCounters(server);
    const session: Session = {
      server,
      bucket,
      benchDir,
      awsConfigFile,
      tools,
      counters: counters?.source,
      countersHow: counters?.how ?? "not counted (the S3 server has no metrics and no local pid)",
    };
    for (const tool of tools.values()) {
      const startup = measureStartup(versionArgv(tool), toolEnv(session, tool.name));
      if (startup !== undefined) tool.startupSeconds = startup;
    }
    return session;
  } catch (e) {
    if (server) await server.stop();
    await rm(benchDir, { recursive: true, force: true });
    throw e;
  }
}

export async function closeSession(session: Session | undefined, keep: boolean): Promise<void> {
  if (!session) return;
  await session.server.stop();
  if (keep) log(`bench: kept ${session.benchDir}`);
  else await rm(session.benchDir, { recursive: true, force: true });
}

/** What a script's body hands to benchMain. */
export interface ScriptResult {
  sections: SectionResult[];
  /** Printed first, above the notes (bench/all.ts: the summary table). */
  summary?: string[];
  /** Seconds spent preparing data (making archives, uploading), for the notes. */
  setupSeconds?: number;
}

/**
 * The main of every benchmark script: signal handlers, `prepare` (before the S3 server: making
 * archives), the session, `body`, then the Markdown report on stdout (and results.md in the
 * bench directory, kept with --keep): the sections, how to reproduce them, what was measured on
 * what. Exit code 1 when a run failed or an output was wrong.
 */
export async function benchMain<T>(
  p: {
    script: string;
    npmScript: string;
    argv: string[];
    opts: BenchOptions;
    prefix: string;
    tools: readonly ToolName[];
  },
  prepare: () => Promise<T>,
  body: (session: Session, prepared: T) => Promise<ScriptResult>,
): Promise<number> {
  state.waitForOtherBench = !p.opts.ignoreOtherBench;
  installSignalHandlers();
  const started = performance.now();
  const source = sourceTracker();
  let session: Session | undefined;
  try {
    const prepared = await prepare();
    session = await openSession(p.prefix, p.tools);
    const result = await body(session, prepared);
    const elapsed = (performance.now() - started) / 1000;
    const args = p.argv.join(" ");
    const notes = [
      `Reproduce: \`${reproduce(p.script, p.argv)}\` (from the repository root; or \`npm run ${p.npmScript}${args ? ` -- ${args}` : ""}\`; ${fmt(elapsed / 60, 1)} min here${result.setupSeconds !== undefined ? `, of which ${fmt(result.setupSeconds / 60, 1)} min preparing the data` : ""}).`,
      source.stamp(),
      `Machine: ${machineDescription()}; S3 = ${serverDescription(session)}; S3 counters: ${session.countersHow}.`,
      ...noJournalNote(session.benchDir),
      "Settings:",
      ...settingsNotes(session),
    ];
    const sections = result.sections.flatMap((s) => [s.markdown, ""]);
    const out = [
      "",
      ...(result.summary
        ? [...result.summary, "", ...notes, "", ...sections]
        : [...sections, ...notes, ""]),
    ].join("\n");
    console.log(out);
    await writeFile(join(session.benchDir, "results.md"), out);
    return result.sections.some((s) => s.failed) ? 1 : 0;
  } finally {
    await closeSession(session, p.opts.keep);
  }
}

export function serverDescription(session: Session): string {
  return `${session.server.description.replace(/ at http\S+, pid \d+/, "")} on loopback, sharing the CPUs`;
}

function s3Client(server: S3Server): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    // No flexible checksums on the uploads: the objects look like most objects in the wild.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/** The environment of every command: the server's credentials, no user config. */
export function baseEnv(session: Session): NodeJS.ProcessEnv {
  const { server, benchDir } = session;
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
    LANG: "C.UTF-8",
    TERM: "dumb",
    TMPDIR: tmpdir(),
    AWS_ENDPOINT_URL: server.endpoint,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: server.region,
    AWS_DEFAULT_REGION: server.region,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_CONFIG_FILE: session.awsConfigFile,
    AWS_SHARED_CREDENTIALS_FILE: join(benchDir, "no-credentials-file"),
  };
}

/** baseEnv, plus rclone's remote `bench:` for rclone. */
export function toolEnv(session: Session, tool: ToolName): NodeJS.ProcessEnv {
  const env = baseEnv(session);
  if (tool !== "rclone") return env;
  const { server } = session;
  return {
    ...env,
    RCLONE_CONFIG: join(session.benchDir, "rclone.conf"), // empty file: the remote comes from env
    RCLONE_CONFIG_BENCH_TYPE: "s3",
    RCLONE_CONFIG_BENCH_PROVIDER: "Minio",
    RCLONE_CONFIG_BENCH_ENDPOINT: server.endpoint,
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: server.accessKeyId,
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: server.secretAccessKey,
    RCLONE_CONFIG_BENCH_REGION: server.region,
  };
}

// ---------------------------------------------------------------------------------------------
// The S3 server's counters: MinIO's metrics v3 (`minio_api_requests_traffic_sent_bytes`, response
// bytes of S3 requests, and `minio_api_requests_total` by API), read with a Prometheus bearer
// token signed with the root credentials (what `mc admin prometheus generate` makes). Where the
// server does not answer them but runs here, the bytes its process wrote (/proc/<pid>/io wchar:
// sockets, plus whatever little it writes to disk while serving reads).

function prometheusToken(server: S3Server): string {
  const b64 = (s: string): string => Buffer.from(s).toString("base64url");
  const head = b64(JSON.stringify({ alg: "HS512", typ: "JWT" }));
  const claims = b64(
    JSON.stringify({
      exp: Math.floor(Date.now() / 1000) + 24 * 3600,
      sub: server.accessKeyId,
      iss: "prometheus",
    }),
  );
  const sig = createHmac("sha512", server.secretAccessKey)
    .update(`${head}.${claims}`)
    .digest("base64url");
  return `${head}.${claims}.${sig}`;
}

async function minioMetrics(server: S3Server, token: string): Promise<S3Counters | undefined> {
  try {
    const res = await fetch(`${server.endpoint}/minio/metrics/v3/api/requests`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5_000),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      return undefined;
    }
    const text = await res.text();
    let sentBytes = 0;
    let seen = false;
    const requests: Record<string, number> = {};
    for (const line of text.split("\n")) {
      const sent = /^minio_api_requests_traffic_sent_bytes\{[^}]*type="s3"[^}]*\} (\S+)$/.exec(
        line,
      );
      if (sent) {
        sentBytes += Number(sent[1]);
        seen = true;
        continue;
      }
      const total = /^minio_api_requests_total\{[^}]*name="([^"]+)"[^}]*\} (\S+)$/.exec(line);
      if (total)
        requests[total[1] as string] = (requests[total[1] as string] ?? 0) + Number(total[2]);
    }
    // Before the first GET the sent-bytes line is missing; the requests are there (PutBucket).
    return seen || Object.keys(requests).length ? { sentBytes, requests } : undefined;
  } catch {
    return undefined;
  }
}

function processWrites(pid: number): S3Counters | undefined {
  try {
    const m = /^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
    return m ? { sentBytes: Number(m[1]), requests: {} } : undefined;
  } catch {
    return undefined;
  }
}

async function serverCounters(
  server: S3Server,
): Promise<{ source: CounterSource; how: string } | undefined> {
  const token = prometheusToken(server);
  if (await minioMetrics(server, token))
    return {
      source: () => minioMetrics(server, token),
      how: "MinIO metrics v3 (minio_api_requests_traffic_sent_bytes: response bytes of S3 requests; minio_api_requests_total)",
    };
  const pid = state.serverPid;
  if (pid !== undefined && processWrites(pid))
    return {
      source: async () => processWrites(pid),
      how: `bytes written by the S3 server's process (/proc/${pid}/io wchar; no request counts)`,
    };
  return undefined;
}

/** "GetObject 256, HeadObject 1" (the most frequent first). */
export function requestsText(requests: Record<string, number> | undefined): string {
  if (!requests) return "-";
  const entries = Object.entries(requests).sort((a, b) => b[1] - a[1]);
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join(", ") : "none";
}

// ---------------------------------------------------------------------------------------------
// Command lines

/** What a command fetches: one object, or every object under a prefix. */
export type Source = { kind: "object"; key: string } | { kind: "prefix"; prefix: string };

/**
 * `dsfetch fetch` of `source` into the storage root `storageRoot` (team "bench"). The datasets
 * array goes on stdin, from a file written now.
 */
export function dsfetchProc(session: Session, source: Source, storageRoot: string): Proc {
  const uri = `s3://${session.bucket}/${source.kind === "object" ? source.key : source.prefix}`;
  const stdinFile = join(session.benchDir, `datasets-${uri.replace(/[^A-Za-z0-9.-]+/g, "_")}.json`);
  writeFileSync(stdinFile, JSON.stringify([{ uri }]));
  return {
    argv: [
      toolPath(session, "dsfetch") ?? process.execPath,
      dsfetchEntry,
      "fetch",
      "--datasets",
      "-",
      "--storage-root",
      storageRoot,
      "--team",
      "bench",
      "--json",
    ],
    env: toolEnv(session, "dsfetch"),
    stdinFile,
  };
}

/**
 * A peer downloading `source` into `outDir`: "copy" fetches it, "sync" is the tool's
 * "only what changed" form (s5cmd sync, aws s3 sync, rclone copy, which skips unchanged files).
 * `aws s3 sync` takes only prefixes: an object is synced as the prefix it is alone under.
 */
export function peerProc(
  session: Session,
  tool: PeerName,
  source: Source,
  outDir: string,
  mode: "copy" | "sync",
): Proc {
  const bin = toolPath(session, tool);
  if (!bin) throw new Error(`${tool} is unavailable`);
  const ep = session.server.endpoint;
  const b = session.bucket;
  const env = toolEnv(session, tool);
  switch (tool) {
    case "s5cmd": {
      const src =
        source.kind === "object" ? `s3://${b}/${source.key}` : `s3://${b}/${source.prefix}*`;
      return {
        argv: [
          bin,
          "--endpoint-url",
          ep,
          "--log",
          "error",
          mode === "copy" ? "cp" : "sync",
          src,
          `${outDir}/`,
        ],
        env,
      };
    }
    case "aws": {
      const common = ["--endpoint-url", ep, "--only-show-errors", "--no-progress"];
      if (mode === "sync") {
        const prefix = source.kind === "object" ? objectPrefix(source.key) : source.prefix;
        return { argv: [bin, "s3", "sync", `s3://${b}/${prefix}`, outDir, ...common], env };
      }
      const argv =
        source.kind === "object"
          ? [bin, "s3", "cp", `s3://${b}/${source.key}`, join(outDir, basename(source.key))]
          : [bin, "s3", "cp", `s3://${b}/${source.prefix}`, outDir, "--recursive"];
      return { argv: [...argv, ...common], env };
    }
    case "rclone": {
      const flags = [
        "--transfers",
        String(RCLONE_TRANSFERS),
        "--checkers",
        String(RCLONE_TRANSFERS),
      ];
      const argv =
        source.kind === "object"
          ? [
              bin,
              "copy",
              `bench:${b}/${source.key}`,
              outDir,
              ...flags,
              "--multi-thread-streams",
              String(RCLONE_STREAMS),
            ]
          : [bin, "copy", `bench:${b}/${source.prefix}`, outDir, ...flags];
      return { argv, env };
    }
  }
}

/** The prefix an object is alone under ("big/big.bin" → "big/"). */
function objectPrefix(key: string): string {
  const dir = posix.dirname(key);
  if (dir === ".") throw new Error(`${key}: aws s3 sync needs the object under its own prefix`);
  return `${dir}/`;
}

/**
 * The command line as text for the tables: the bench's paths as `<dir>`, the bucket as `b`,
 * programs by their basename, the endpoint as `$ENDPOINT`.
 */
export function procText(session: Session, proc: Proc): string {
  return proc.argv
    .map((a) => (a.startsWith(session.benchDir) ? `<${relative(session.benchDir, a)}>` : a))
    .map((a) => (a === session.server.endpoint ? "$ENDPOINT" : a))
    .map((a) => (a.startsWith("/") ? basename(a) : a))
    .map((a) => a.replaceAll(session.bucket, "b"))
    .join(" ");
}

// ---------------------------------------------------------------------------------------------
// Test data: random objects, uploaded once per session

export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  md5: string;
  parts: number;
  partSize: number;
}

export interface PrefixInfo {
  prefix: string;
  count: number;
  size: number;
  /** basename → md5 hex */
  md5: Map<string, string>;
}

/** One object of random bytes, multipart-uploaded in `partSize` parts (4 in flight). */
export async function uploadObject(
  session: Session,
  key: string,
  size: number,
  partSize: number,
): Promise<ObjectInfo> {
  const t = performance.now();
  const s3 = s3Client(session.server);
  const bucket = session.bucket;
  try {
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
    );
    if (!UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
    const partCount = Math.ceil(size / partSize);
    const whole = createHash("md5");
    const etags: string[] = new Array(partCount);
    // Parts are generated (and hashed) in order; up to 4 uploads in flight.
    let inFlight: Promise<void>[] = [];
    for (let n = 1; n <= partCount; n++) {
      const body = randomBytes(Math.min(partSize, size - (n - 1) * partSize));
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
    const info = { key, size, etag, md5: whole.digest("hex"), parts: partCount, partSize };
    log(
      `bench: uploaded s3://${bucket}/${key}: ${fmtBytes(size)} in ${partCount} parts of ${fmtBytes(partSize)}, ETag ${etag}, in ${fmt((performance.now() - t) / 1000, 1)}s`,
    );
    return info;
  } finally {
    s3.destroy();
  }
}

/** `count` objects of `size` random bytes under `prefix` (plain PUTs, 64 in flight). */
export async function uploadPrefix(
  session: Session,
  prefix: string,
  count: number,
  size: number,
): Promise<PrefixInfo> {
  const t = performance.now();
  const agent = new Agent({ keepAlive: true, maxSockets: UPLOAD_CONCURRENCY });
  const md5 = new Map<string, string>();
  const width = String(count - 1).length;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const name = `${String(i).padStart(width, "0")}.bin`;
      const body = randomBytes(size);
      md5.set(name, createHash("md5").update(body).digest("hex"));
      await putRaw(session.server, agent, session.bucket, prefix + name, body);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(UPLOAD_CONCURRENCY, count) }, worker));
  } finally {
    agent.destroy();
  }
  const secs = (performance.now() - t) / 1000;
  log(
    `bench: uploaded ${count} objects of ${size} bytes under s3://${session.bucket}/${prefix} in ${fmt(secs, 1)}s (${fmt(count / secs, 0)} PUT/s, ${UPLOAD_CONCURRENCY} in flight)`,
  );
  return { prefix, count, size, md5 };
}

/** Uploads a local file with s5cmd (multipart, 50 MiB parts: a "-N" ETag, as most uploaders make). */
export function uploadFile(session: Session, file: string, key: string): void {
  const s5cmd = toolPath(session, "s5cmd");
  if (!s5cmd) throw new Error("no s5cmd to upload with");
  const r = spawnSync(
    s5cmd,
    [
      "--endpoint-url",
      session.server.endpoint,
      "--log",
      "error",
      "cp",
      file,
      `s3://${session.bucket}/${key}`,
    ],
    { env: baseEnv(session), encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`uploading ${key} failed: ${r.stderr || r.error}`);
}

// Plain PUTs with SigV4 and UNSIGNED-PAYLOAD over keep-alive node:http (20,000 of them through
// the SDK take several times longer).

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

// ---------------------------------------------------------------------------------------------
// Checking outputs (outside the timed part)

/** Undefined when `dir` holds exactly the object (under its basename); else what is wrong. */
export function checkObjectOutput(
  dir: string,
  info: ObjectInfo,
  deep: boolean,
): string | undefined {
  const files = listFiles(dir);
  const name = basename(info.key);
  const found = files.filter((f) => basename(f) === name);
  if (found.length !== 1 || files.length !== 1)
    return `expected one ${name}, found ${files.length} files (${files
      .slice(0, 3)
      .map((f) => relative(dir, f))
      .join(", ")})`;
  const path = found[0] as string;
  const size = statSync(path).size;
  if (size !== info.size) return `${relative(dir, path)}: ${size} bytes, expected ${info.size}`;
  if (deep && md5File(path) !== info.md5)
    return `${relative(dir, path)}: MD5 differs from the uploaded bytes`;
  return undefined;
}

/** Undefined when `dir` holds exactly the prefix's objects; else what is wrong. */
export function checkPrefixOutput(
  dir: string,
  info: PrefixInfo,
  deep: boolean,
): string | undefined {
  const files = listFiles(dir);
  if (files.length !== info.count) return `${files.length} files, expected ${info.count}`;
  let bad = 0;
  let first = "";
  for (const path of files) {
    const expected = info.md5.get(basename(path));
    const wrong =
      expected === undefined ||
      statSync(path).size !== info.size ||
      (deep && createHash("md5").update(readFileSync(path)).digest("hex") !== expected);
    if (wrong) {
      bad++;
      first ||= relative(dir, path);
    }
  }
  return bad ? `${bad} files wrong or unexpected (first: ${first})` : undefined;
}
