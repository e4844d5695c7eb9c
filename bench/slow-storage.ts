// Benchmark (not a test): extracting a tar (or zip) of many small files onto storage where every
// metadata request is a round trip, as on NFS or EFS, the shared storage dsfetch writes to.
// The stand-in is bench/slowfs (a FUSE loopback that delays lookup, create, mkdir, setattr,
// unlink and rmdir by --delay), built from the Go module proxy once per machine and mounted
// here (needs root and /dev/fuse). Timed in the same run, each into a fresh directory:
//   GNU tar -xf            (one file at a time, ~5 delayed requests per file)
//   dsfetch auto           (bench/extract-local.mjs: the extraction of a fetch; one file at a
//                           time until creates turn out slow, then in parallel)
//   dsfetch serial         (DSFETCH_FILE_WRITES=serial: one file at a time, as before)
// and the same three on the backing directory itself (no FUSE, no delay), to show what "auto"
// costs where storage is fast.
//
//   npm run bench:slow-storage -- [--delay 1ms] [--files 20000] [--size 16384] [--runs 1]
//                                   [--format tar|zip]
//
// With --format zip the archive is a zip of the same tree (stored: the files are random) and
// the peer is Info-ZIP's `unzip -q` instead of GNU tar.
//
// The archive is generated (random bytes, 100 files per directory, like bench/archive-data.ts's
// small tree) under the cache directory and reused. Output: a Markdown table on stdout.

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { cacheRoot, findGo } from "../test/harness/minio-binary.ts";
import { buildDsfetch, extractLocalEntry } from "./common.ts";

const here = fileURLToPath(new URL(".", import.meta.url));
const args = process.argv.slice(2);
function option(name: string, fallback: string): string {
  const at = args.indexOf(name);
  return at === -1 ? fallback : (args[at + 1] ?? fallback);
}
const delay = option("--delay", "1ms");
const files = Number(option("--files", "20000"));
const size = Number(option("--size", "16384"));
const runs = Number(option("--runs", "1"));
const format = option("--format", "tar");
if (format !== "tar" && format !== "zip") fail(`--format: "${format}" is not tar or zip`);
// dist/ and the bundled extraction (extractLocalEntry), as the other benchmarks build them.
buildDsfetch();

function log(line: string): void {
  process.stderr.write(`slow-storage: ${line}\n`);
}

function fail(line: string): never {
  log(line);
  process.exit(1);
}

if (process.getuid?.() !== 0 || !existsSync("/dev/fuse")) {
  fail("needs root and /dev/fuse (slowfs mounts with FUSE, without fusermount)");
}

/** bench/slowfs built once per machine into the cache (like s5cmd: bench/peers.ts). */
function slowfsBinary(): string {
  const binary = join(cacheRoot(), "slowfs-v1", "slowfs");
  if (existsSync(binary)) return binary;
  const go = findGo() ?? fail("no Go toolchain to build bench/slowfs");
  log(`building bench/slowfs → ${binary} (once per machine)…`);
  const built = spawnSync(go, ["build", "-o", binary, "."], {
    cwd: join(here, "slowfs"),
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, CGO_ENABLED: "0" },
  });
  if (built.status !== 0) fail("go build of bench/slowfs failed");
  return binary;
}

/** The archive: `files` random files of `size` ± 25%, 100 per directory. */
function archive(): string {
  const dir = join(cacheRoot(), "slow-storage-data");
  const tar = join(dir, `small-${files}x${size}.${format}`);
  if (existsSync(tar)) return tar;
  const tree = join(dir, `tree-${files}x${size}`);
  rmSync(tree, { recursive: true, force: true });
  for (let i = 0; i < files; i++) {
    const sub = join(tree, "small", `c${String(Math.floor(i / 100)).padStart(4, "0")}`);
    if (i % 100 === 0) mkdirSync(sub, { recursive: true });
    const bytes = Math.round(size * (0.75 + Math.random() * 0.5));
    writeFileSync(join(sub, `${String(i).padStart(6, "0")}.jpg`), randomBytes(bytes));
  }
  const made =
    format === "zip"
      ? spawnSync("zip", ["-qr0", tar, "small"], { cwd: tree, stdio: "inherit" })
      : spawnSync("tar", ["-C", tree, "-cf", tar, "small"], { stdio: "inherit" });
  rmSync(tree, { recursive: true, force: true });
  if (made.status !== 0) fail(`making ${tar} failed`);
  return tar;
}

async function mount(binary: string, backing: string, point: string) {
  mkdirSync(backing, { recursive: true });
  mkdirSync(point, { recursive: true });
  const child = spawn(binary, ["-delay", delay, backing, point], { stdio: "inherit" });
  for (let i = 0; i < 100; i++) {
    const mounts = spawnSync("findmnt", ["-n", point], { encoding: "utf8" }).stdout;
    if (mounts.includes("slowfs")) return child;
    await sleep(50);
  }
  child.kill();
  fail(`slowfs did not mount at ${point}`);
}

function timed(argv: string[], env: Record<string, string> = {}): number {
  const start = performance.now();
  const run = spawnSync(argv[0] as string, argv.slice(1), {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, ...env },
  });
  if (run.status !== 0) fail(`${argv.join(" ")} exited with ${run.status}`);
  return (performance.now() - start) / 1000;
}

const peer: [string, (dest: string, tar: string) => number] =
  format === "zip"
    ? ["unzip -q", (dest, zip) => timed(["unzip", "-q", zip, "-d", dest])]
    : ["GNU tar -xf", (dest, tar) => timed(["tar", "-C", dest, "-xf", tar])];
const tools: [string, (dest: string, tar: string) => number][] = [
  peer,
  ["dsfetch (auto)", (dest, tar) => timed([process.execPath, extractLocalEntry, tar, dest])],
  [
    "dsfetch (serial)",
    (dest, tar) =>
      timed([process.execPath, extractLocalEntry, tar, dest], {
        DSFETCH_FILE_WRITES: "serial",
      }),
  ],
];

const binary = slowfsBinary();
const tar = archive();
const work = join(cacheRoot(), "slow-storage-work");
rmSync(work, { recursive: true, force: true });
const backing = join(work, "backing");
const point = join(work, "mnt");
const child = await mount(binary, backing, point);
const rows: string[] = [];
try {
  for (const [where, root, tag] of [
    [`slowfs, ${delay} per metadata request`, point, "slow"],
    ["the backing directory (no FUSE, no delay)", backing, "fast"],
  ] as const) {
    const times = new Map<string, number[]>();
    for (let run = 0; run < runs; run++) {
      for (const [name, extract] of tools) {
        const dest = join(root, `${tag}-${name.replace(/\W+/g, "-")}-${run}`);
        mkdirSync(dest);
        log(`${where}: ${name}, run ${run + 1}…`);
        const seconds = extract(dest, tar);
        times.set(name, [...(times.get(name) ?? []), seconds]);
      }
    }
    const median = (name: string): number => {
      const sorted = [...(times.get(name) ?? [])].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
    };
    const tarTime = median(peer[0]);
    for (const [name] of tools) {
      const t = median(name);
      rows.push(
        `| ${where} | ${name} | ${t.toFixed(2)} s | ${(t / tarTime).toFixed(2)} | ${(times.get(name) ?? []).map((x) => x.toFixed(2)).join(", ")} |`,
      );
    }
  }
} finally {
  child.kill("SIGTERM");
  await sleep(500);
  spawnSync("umount", [point]);
  rmSync(work, { recursive: true, force: true });
}
process.stdout.write(
  `${files} files of ${size} B ± 25% (${tar}), ${runs} run(s) each, median:\n\n` +
    `| storage | extraction | time | / ${peer[0]} | runs |\n| --- | --- | --- | --- | --- |\n` +
    `${rows.join("\n")}\n`,
);
