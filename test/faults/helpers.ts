// Shared by the fault suite (test/faults/*.test.ts): how many runs, a seeded PRNG, the real CLI
// as a process (with a V8 compile cache: startup is most of a short run's cost on 2 cores),
// and the checks every scenario makes on what a run left behind.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { baseEnv, CLI_ENTRY, type CliResult, runCli } from "../harness/cli.ts";
import { type FaultProxy, isListObjectsV2 } from "../harness/fault-proxy.ts";
import { testEnv } from "../harness/s3.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const TEAM = "ml";

/**
 * Runs per scenario case: `DSFETCH_FAULT_RUNS` (default 1, the reduced mode that `npm test`
 * can afford within its 10 minutes: at 2 the run had grown to 620 s in session 23; `npm run
 * test:faults` uses 20).
 */
export const RUNS = faultRuns(process.env.DSFETCH_FAULT_RUNS);

function faultRuns(text: string | undefined): number {
  if (text === undefined || text.trim() === "") return 1;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) {
    throw new Error(`DSFETCH_FAULT_RUNS must be a whole number from 1 to 10000, got ${text}`);
  }
  return n;
}

/**
 * The suite's seed: `DSFETCH_FAULT_SEED` to replay a run, otherwise a new one. Every scenario
 * prints it; each file derives its own stream from it and its name (see rngFor).
 */
export const SEED = suiteSeed(process.env.DSFETCH_FAULT_SEED);

function suiteSeed(text: string | undefined): number {
  if (text === undefined || text.trim() === "") return (Math.random() * 2 ** 32) >>> 0;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0 || n >= 2 ** 32) {
    throw new Error(`DSFETCH_FAULT_SEED must be a whole number from 0 to 4294967295, got ${text}`);
  }
  return n;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same choices. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  /** A whole number in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  float(lo: number, hi: number): number {
    return lo + this.next() * (hi - lo);
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from nothing");
    return items[Math.floor(this.next() * items.length)] as T;
  }
}

/** The PRNG of one scenario file: the suite seed mixed with the file's name. */
export function rngFor(scenario: string): Rng {
  const digest = createHash("sha256").update(`${SEED}:${scenario}`).digest();
  return new Rng(digest.readUInt32LE(0));
}

/**
 * Environment of a dsfetch process: the test S3 server, then `extra` (Node's compile cache is
 * the run's own, beside its bundle: harness/cli.ts baseEnv).
 */
export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { ...testEnv(), ...extra };
}

export interface StagedJson {
  name: string;
  uri: string;
  etag: string | null;
  path: string;
  bytes: number;
  cached: boolean;
  retries: number;
  refetchedBytes: number;
  volume: "shared" | "ephemeral";
  verification: Record<string, number>;
  error?: { code: string; message: string; hint?: string; expected?: string; found?: string };
}

export interface FetchResult extends CliResult {
  json: { datasets: StagedJson[] } | undefined;
  seconds: number;
}

/** `dsfetch fetch --json` with the datasets on standard input. */
export async function fetchCli(
  datasets: unknown,
  options: { storage?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<FetchResult> {
  const args = ["fetch", "--datasets", "-", "--json"];
  const env: Record<string, string> = {};
  if (options.storage !== undefined) {
    // dsfetch never creates a storage root (a missing one means "not mounted": it falls back
    // to an ephemeral volume, which would go to the default root under /tmp).
    await mkdir(options.storage, { recursive: true });
    args.push("--storage-root", options.storage, "--team", TEAM);
    env.DSFETCH_EPHEMERAL_ROOT = `${options.storage}.ephemeral`;
  }
  const started = performance.now();
  const result = await runCli(args, {
    env: cliEnv({ ...env, ...options.env }),
    stdin: JSON.stringify(datasets),
    timeoutMs: options.timeoutMs ?? 120_000,
  });
  return { ...result, json: parseJson(result.stdout), seconds: elapsedSince(started) };
}

export function parseJson(text: string): { datasets: StagedJson[] } | undefined {
  try {
    return text.trim() === "" ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

function elapsedSince(started: number): number {
  return (performance.now() - started) / 1000;
}

/** A dsfetch process the test controls (to kill it). */
export interface Started {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startCli(
  args: readonly string[],
  env: Record<string, string>,
  stdin: string | Buffer = "",
): Started {
  const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
    env: baseEnv(env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  child.stdin?.on("error", () => {});
  child.stdin?.end(stdin);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

export const sha256 = (data: Buffer | string): string =>
  createHash("sha256").update(data).digest("hex");

export const dataRoot = (storage: string): string => join(storage, TEAM, "data");

/** What is left in a `.dsfetch/tmp` (attempt directories): must be nothing after any run. */
export async function leftovers(metaParent: string): Promise<string[]> {
  return readdir(join(metaParent, ".dsfetch", "tmp")).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return [];
    throw error;
  });
}

/** Entries of a directory, or [] when it does not exist. */
export async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return [];
    throw error;
  });
}

/** Published datasets are read-only: make everything writable, then remove. */
export async function removeAll(dir: string | undefined): Promise<void> {
  if (!dir) return;
  const walk = async (path: string): Promise<void> => {
    await chmod(path, 0o755).catch(() => {});
    for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) await walk(join(path, entry.name));
    }
  };
  await walk(dir);
  await rm(dir, { recursive: true, force: true });
}

export async function scratchDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `dsfetch-faults-${prefix}-`));
}

/** Every regular file under `dir` → SHA-256 of its content, by path relative to `dir`. */
export async function treeDigests(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (path: string): Promise<void> => {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) await walk(full);
      else out.set(relative(dir, full), sha256(await readFile(full)));
    }
  };
  await walk(dir);
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Body bytes of object GETs (not listings) answered 200/206: the object bytes delivered. */
export function objectBodyBytes(proxy: FaultProxy): number {
  return proxy.requests
    .filter(
      (r) => r.method === "GET" && !isListObjectsV2(r) && (r.status === 200 || r.status === 206),
    )
    .reduce((n, r) => n + r.bodyBytes, 0);
}

export const diagnostics = (result: CliResult): string =>
  `exit ${result.code} signal ${result.signal}\n--- stderr\n${result.stderr}\n--- stdout\n${result.stdout.slice(0, 4000)}`;

/** Lines of a stack trace ("    at f (file:1:2)"): never in what dsfetch prints. */
export function stackLines(text: string): string[] {
  return text.split("\n").filter((line) => /^\s+at\s/.test(line));
}

/** Polls `check` every `everyMs` until it is true; false when `timeoutMs` passed first. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 10,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
