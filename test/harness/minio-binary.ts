// A real MinIO server for tests, built from source with `go install` once per machine and
// cached outside the repository. Used when no S3 endpoint is configured and no Docker engine
// answers. See startS3Server() in ./s3-server.ts for the order of choices.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { accessSync, constants as fsConstants, readFileSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { homedir, hostname, tmpdir } from "node:os";
import { delimiter, join } from "node:path";

/** Go module of the MinIO server. */
export const MINIO_MODULE = "github.com/minio/minio";
/** The one pinned MinIO version built by the harness (a Go pseudo-version of minio/minio). */
export const MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c";
/**
 * MinIO's single static KMS key ("name:base64 of 32 bytes"; a test value, not a secret): with
 * it MinIO stores SSE-KMS objects, whose ETags are not MD5s, as on AWS (test/fetch/sse-kms).
 */
export const TEST_KMS_SECRET_KEY = "dsfetch-test-key:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/** Where Go is looked for when it is not on PATH. */
const GO_FALLBACKS = [
  "/usr/local/go/bin/go",
  "/usr/lib/go/bin/go",
  join(homedir(), "go", "bin", "go"),
];

const BUILD_LOCK_WAIT_MS = 30 * 60_000;
const FOREIGN_LOCK_STALE_MS = 60 * 60_000;
const HEALTH_TIMEOUT_MS = 60_000;

export type Log = (line: string) => void;
const stderrLog: Log = (line) => {
  process.stderr.write(`${line}\n`);
};

/** `${DSFETCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsfetch}` */
export function cacheRoot(): string {
  const explicit = process.env.DSFETCH_CACHE_DIR;
  if (explicit) return explicit;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg ? xdg : join(homedir(), ".cache"), "dsfetch");
}

export function minioBinaryDir(): string {
  return join(cacheRoot(), `minio-${MINIO_VERSION}`);
}

export function minioBinaryPath(): string {
  return join(minioBinaryDir(), "minio");
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The Go toolchain: PATH first, then $GOROOT/bin, then the usual install locations. */
export function findGo(): string | undefined {
  const candidates: string[] = [];
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir) candidates.push(join(dir, "go"));
  }
  if (process.env.GOROOT) candidates.push(join(process.env.GOROOT, "bin", "go"));
  candidates.push(...GO_FALLBACKS);
  return candidates.find(isExecutableFile);
}

export function goSearchDescription(): string {
  return `PATH, $GOROOT/bin, ${GO_FALLBACKS.join(", ")}`;
}

/** Thrown when the binary is not cached and cannot be built because Go is missing. */
export class GoNotFoundError extends Error {
  constructor() {
    super(
      `MinIO ${MINIO_VERSION} is not cached at ${minioBinaryPath()} and no Go toolchain was found ` +
        `(looked in ${goSearchDescription()}).`,
    );
    this.name = "GoNotFoundError";
  }
}

/** True when the cached binary exists and runs (`minio --version`). */
function binaryWorks(path: string): boolean {
  if (!isExecutableFile(path)) return false;
  const r = spawnSync(path, ["--version"], { stdio: "ignore", timeout: 30_000 });
  return r.status === 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether process `pid` runs (one of another user's counts). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

interface LockOwner {
  pid: number;
  host: string;
  since: number;
}

/** A lock directory (mkdir is atomic, also on NFS) so one process builds while others wait. */
async function tryLock(lockDir: string): Promise<boolean> {
  try {
    await mkdir(lockDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
  const owner: LockOwner = { pid: process.pid, host: hostname(), since: Date.now() };
  await writeFile(join(lockDir, "owner.json"), JSON.stringify(owner));
  return true;
}

function readOwner(lockDir: string): LockOwner | undefined {
  try {
    return JSON.parse(readFileSync(join(lockDir, "owner.json"), "utf8")) as LockOwner;
  } catch {
    return undefined;
  }
}

function lockIsStale(lockDir: string): boolean {
  const owner = readOwner(lockDir);
  if (owner && owner.host === hostname()) return !pidAlive(owner.pid);
  // Another host (shared cache) or an owner file not written yet: go by age.
  try {
    return Date.now() - statSync(lockDir).mtimeMs > FOREIGN_LOCK_STALE_MS;
  } catch {
    return false; // vanished: the next tryLock decides
  }
}

/**
 * Returns the path of the MinIO binary, building it first if this machine has none.
 * The build goes into a private temporary GOBIN and is then renamed into place, so concurrent
 * builders (other test runs, other machines sharing the cache) never see a partial binary;
 * a lock directory makes the others wait instead of building the same thing again.
 */
export async function ensureMinioBinary(log: Log = stderrLog): Promise<string> {
  const target = minioBinaryPath();
  if (binaryWorks(target)) return target;

  const root = cacheRoot();
  await mkdir(root, { recursive: true });
  const lockDir = join(root, `minio-${MINIO_VERSION}.lock`);
  const deadline = Date.now() + BUILD_LOCK_WAIT_MS;
  let announcedWait = false;
  for (;;) {
    if (binaryWorks(target)) return target;
    if (await tryLock(lockDir)) break;
    if (lockIsStale(lockDir)) {
      log(`dsfetch tests: removing stale MinIO build lock ${lockDir}`);
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${BUILD_LOCK_WAIT_MS / 60_000} min waiting for another MinIO build ` +
          `(lock ${lockDir}, holder ${JSON.stringify(readOwner(lockDir))}). ` +
          "Remove the lock directory if no build is running.",
      );
    }
    if (!announcedWait) {
      const owner = readOwner(lockDir);
      const holder = owner ? `pid ${owner.pid} on ${owner.host}` : "another process";
      log(`dsfetch tests: waiting for the MinIO build of ${holder} (lock ${lockDir})…`);
      announcedWait = true;
    }
    await sleep(2_000);
  }

  try {
    if (binaryWorks(target)) return target; // built by the previous lock holder
    await buildInto(target, log);
    return target;
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

async function buildInto(target: string, log: Log): Promise<void> {
  const go = findGo();
  if (!go) throw new GoNotFoundError();
  const root = cacheRoot();
  const tmpBin = await mkdtemp(join(root, `minio-${MINIO_VERSION}.tmp-`));
  const spec = `${MINIO_MODULE}@${MINIO_VERSION}`;
  log(
    `dsfetch tests: building MinIO from source, once per machine: ${go} install ${spec} ` +
      `→ ${target} (takes a few minutes)…`,
  );
  const started = Date.now();
  try {
    const output: string[] = [];
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(go, ["install", spec], {
        cwd: tmpBin, // outside any module, so `go install pkg@version` ignores the local go.mod
        env: { ...process.env, GOBIN: tmpBin, CGO_ENABLED: "0", GO111MODULE: "on" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const onData = (chunk: Buffer): void => {
        for (const line of chunk.toString("utf8").split("\n")) {
          if (line.trim()) output.push(line);
        }
        if (output.length > 2000) output.splice(0, output.length - 200);
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      const heartbeat = setInterval(() => {
        const secs = Math.round((Date.now() - started) / 1000);
        const last = output.at(-1);
        log(`dsfetch tests: still building MinIO (${secs}s)${last ? `: ${last}` : ""}`);
      }, 30_000);
      child.on("error", (e) => {
        clearInterval(heartbeat);
        reject(e);
      });
      child.on("close", (c) => {
        clearInterval(heartbeat);
        resolve(c);
      });
    });
    const built = join(tmpBin, "minio");
    if (code !== 0 || !isExecutableFile(built)) {
      throw new Error(
        `building MinIO failed (${go} install ${spec} exited with ${code}). Last output:\n` +
          output.slice(-40).join("\n"),
      );
    }
    await mkdir(minioBinaryDir(), { recursive: true });
    await rename(built, target); // atomic: readers see no binary or a whole one
    log(`dsfetch tests: built MinIO in ${Math.round((Date.now() - started) / 1000)}s: ${target}`);
  } finally {
    await rm(tmpBin, { recursive: true, force: true });
  }
}

/** A free TCP port on 127.0.0.1 (released before returning; MinIO binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}

export interface RunningMinio {
  endpoint: string;
  dataDir: string;
  pid: number;
  stop(): Promise<void>;
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a MinIO behind when the owning process exits without calling stop().
  process.on("exit", () => {
    for (const child of liveChildren) child.kill("SIGKILL");
  });
}

/**
 * Starts `minio server <fresh temp dir>` on loopback ports and waits until it is live.
 * stop() kills it and removes the data directory.
 */
export async function startMinioBinary(opts: {
  binary: string;
  accessKeyId: string;
  secretAccessKey: string;
}): Promise<RunningMinio> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      lastError = e;
      // A port taken between freePort() and MinIO's bind is the one failure worth retrying.
      if (!(e instanceof Error && /address already in use/i.test(e.message))) throw e;
    }
  }
  throw lastError;
}

async function startOnce(opts: {
  binary: string;
  accessKeyId: string;
  secretAccessKey: string;
}): Promise<RunningMinio> {
  const dataDir = await mkdtemp(join(tmpdir(), "dsfetch-minio-"));
  const port = await freePort();
  let consolePort = await freePort();
  while (consolePort === port) consolePort = await freePort();

  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("MINIO_")) env[k] = v;
  }
  Object.assign(env, {
    MINIO_ROOT_USER: opts.accessKeyId,
    MINIO_ROOT_PASSWORD: opts.secretAccessKey,
    MINIO_BROWSER: "off",
    MINIO_UPDATE: "off",
    MINIO_CI_CD: "on",
    MINIO_KMS_SECRET_KEY: TEST_KMS_SECRET_KEY,
  });

  const child = spawn(
    opts.binary,
    [
      "server",
      dataDir,
      "--address",
      `127.0.0.1:${port}`,
      "--console-address",
      `127.0.0.1:${consolePort}`,
    ],
    { env, stdio: ["ignore", "pipe", "pipe"] },
  );
  installExitHook();
  liveChildren.add(child);

  const output: string[] = [];
  const collect = (chunk: Buffer): void => {
    output.push(chunk.toString("utf8"));
    if (output.length > 500) output.splice(0, output.length - 200);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) => {
    child.on("close", (code, signal) => {
      exited = { code, signal };
      liveChildren.delete(child);
      resolve();
    });
  });
  let spawnError: Error | undefined;
  child.on("error", (e) => {
    spawnError = e;
  });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited && !spawnError) {
      child.kill("SIGTERM");
      const killTimer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exitPromise;
      clearTimeout(killTimer);
    }
    liveChildren.delete(child);
    await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
  };

  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  for (;;) {
    if (spawnError || exited) {
      await stop();
      const how = spawnError
        ? String(spawnError)
        : `exited with ${exited?.signal ?? `code ${exited?.code}`}`;
      throw new Error(
        `MinIO (${opts.binary}) ${how} before becoming ready. Its output:\n${output.join("").trim()}`,
      );
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `MinIO (${opts.binary}) did not answer ${endpoint}/minio/health/live within ` +
          `${HEALTH_TIMEOUT_MS / 1000}s. Its output:\n${output.join("").trim()}`,
      );
    }
    try {
      const res = await fetch(`${endpoint}/minio/health/live`, {
        signal: AbortSignal.timeout(2_000),
      });
      await res.body?.cancel();
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  return { endpoint, dataDir, pid: child.pid ?? -1, stop };
}
