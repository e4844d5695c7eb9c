// Test data of the archive benchmark (bench/archive.ts): deterministic trees of files and the
// archives made from them with the usual tools, cached between runs of the benchmark.
//
//   mix     a realistic mix (--size, default 1 GiB): CSV tables, JSON-lines events and log
//           files (text, from a Zipf-distributed vocabulary of made-up words and random
//           numbers), float32 arrays (a random walk: partly compressible, like .npy) and
//           random bytes (incompressible, like JPEG images). 93% of the files are small
//           (1-256 KiB, log-uniform), 7% large (1-64 MiB), so most bytes are in large files.
//           Archived as .tar.gz (pigz, else gzip), .tar.xz (`xz -T0`: multi-block) and .zip
//           (`zip -qr`); the .tar.bz2 (lbzip2, else bzip2) is made from the first --bz2-size
//           bytes of the same file sequence (default 256 MiB: bzip2 is slow on both ends).
//   small   --small-count files (default 20,000) of --small-size ± 25% (default 16 KiB) random
//           bytes in directories of 100, archived as a plain .tar.
//
// Everything derives from fixed seeds: the same options give the same trees (and, with the same
// tool versions, the same archives). Each archive is built once into
//   ${DSFETCH_BENCH_DIR:-<os tmpdir>}/dsfetch-archive-data/<DATA_VERSION>-<parameters>/
// (written under a temporary name, then renamed; its description beside it in <file>.json) and
// reused while that file exists. The trees are generated only when an archive is missing; the
// mixed trees are removed once every archive exists (the 20,000-file tree is kept: see "Removing
// outputs" in bench/common.ts); a manifest (path, size, MD5 of every file) stays, to check what
// each tool extracted.

import { spawn } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type Format, fmtBytes, MiB } from "./common.ts";
import { type Log, which } from "./peers.ts";

export { ALL_FORMATS } from "./common.ts";
export type { Format };

/** Bump when the generator or the archive commands change: the cache key includes it. */
export const DATA_VERSION = "v1";

export interface DataOptions {
  /** Bytes of the mixed tree (.tar.gz, .tar.xz, .zip). */
  size: number;
  /** Bytes of the mixed tree for .tar.bz2 (a prefix of the same file sequence). */
  bz2Size: number;
  smallCount: number;
  smallSize: number;
  /** xz preset level (`xz -T0 -<level>`). */
  xzLevel: number;
  /** Rebuild every archive even when cached. */
  regenerate: boolean;
}

/** One file of a tree: path inside the archive, size, MD5 (hex). */
export type ManifestEntry = [path: string, size: number, md5: string];

export interface ArchiveInfo {
  format: Format;
  /** Absolute path of the archive in the cache. */
  file: string;
  /** Object key in the bucket (its extension selects dsfetch's expansion). */
  key: string;
  /** Name dsfetch gives the dataset (the key less its archive extension). */
  name: string;
  bytes: number;
  expandedBytes: number;
  files: number;
  /** The manifest of the tree it holds. */
  manifest: string;
  /** How it was made (the command, tool versions). */
  made: string;
  /** Seconds it took to make (when it was made). */
  seconds: number;
}

export interface PreparedData {
  dir: string;
  archives: Map<Format, ArchiveInfo>;
}

const FIXED_MTIME = 1_700_000_000; // 2023-11-14: every file and tar header gets this mtime

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: a small, fast 32-bit PRNG (plenty for test data). */
function rng32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function seedOf(...parts: (string | number)[]): number {
  return createHash("md5").update(parts.join("\0")).digest().readUInt32LE(0);
}

/** `size` random bytes, AES-128-CTR of zeros keyed by `label` (GB/s, deterministic). */
function randomBytesFor(label: string, size: number): Buffer {
  const key = createHash("md5").update(`key\0${label}`).digest();
  const iv = createHash("md5").update(`iv\0${label}`).digest();
  const cipher = createCipheriv("aes-128-ctr", key, iv);
  const out = cipher.update(Buffer.alloc(size));
  cipher.final();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text: a vocabulary of made-up words, picked with a Zipf-like distribution

// biome-ignore format: a table
const SYLLABLES = [
  "ka", "to", "ri", "mo", "ne", "sa", "lu", "pe", "di", "go", "va", "shi", "en", "ar", "ol",
  "im", "tra", "bel", "cor", "dan", "fis", "gar", "hol", "jin", "kel", "lom", "mur", "nis",
  "pra", "qua", "ros", "sel", "tum", "ven", "wex", "yor", "zan", "ble", "cri", "dro",
];

const VOCABULARY_SIZE = 6000;

interface Vocabulary {
  words: Uint8Array[];
  /** 65,536 entries: a uniform 16-bit number → a word index, Zipf-distributed (s = 1.1). */
  zipf: Uint16Array;
}

let vocabulary: Vocabulary | undefined;

function getVocabulary(): Vocabulary {
  if (vocabulary) return vocabulary;
  const r = rng32(seedOf("vocabulary"));
  const seen = new Set<string>();
  const words: Uint8Array[] = [];
  while (words.length < VOCABULARY_SIZE) {
    const n = 1 + (r() % 4);
    let w = "";
    for (let i = 0; i < n; i++) w += SYLLABLES[r() % SYLLABLES.length];
    if (seen.has(w)) continue;
    seen.add(w);
    words.push(Buffer.from(w, "ascii"));
  }
  const weights = Array.from({ length: VOCABULARY_SIZE }, (_, i) => 1 / (i + 1) ** 1.1);
  const total = weights.reduce((a, b) => a + b, 0);
  const zipf = new Uint16Array(65536);
  let acc = 0;
  let k = 0;
  for (let i = 0; i < VOCABULARY_SIZE; i++) {
    acc += (weights[i] as number) / total;
    const end = Math.min(65536, Math.round(acc * 65536));
    while (k < end) zipf[k++] = i;
  }
  while (k < 65536) zipf[k++] = VOCABULARY_SIZE - 1;
  vocabulary = { words, zipf };
  return vocabulary;
}

const ascii = (s: string): Uint8Array => Buffer.from(s, "ascii");
const CATEGORIES = [
  "train",
  "validation",
  "test",
  "holdout",
  "unlabeled",
  "augmented",
  "synthetic",
  "review",
].map(ascii);
const EVENTS = ["click", "view", "purchase", "signup", "logout", "search", "share", "error"].map(
  ascii,
);
const LEVELS = ["INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR"].map(ascii);
const MODULES = [
  "loader.shard",
  "trainer.step",
  "io.prefetch",
  "net.client",
  "eval.metrics",
  "ckpt.writer",
].map(ascii);

/** A byte buffer written with no bounds checks: callers leave LINE_SLACK bytes of headroom. */
class Writer {
  readonly buf: Buffer;
  pos = 0;
  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity);
  }
  bytes(b: Uint8Array): void {
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < b.length; i++) buf[p++] = b[i] as number;
    this.pos = p;
  }
  byte(c: number): void {
    this.buf[this.pos++] = c;
  }
  str(s: string): void {
    for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
  }
  /** A non-negative integer in decimal. */
  uint(n: number): void {
    const buf = this.buf;
    if (n === 0) {
      buf[this.pos++] = 48;
      return;
    }
    const start = this.pos;
    let p = start;
    let v = n;
    while (v > 0) {
      const q = Math.floor(v / 10);
      buf[p++] = 48 + (v - q * 10);
      v = q;
    }
    this.pos = p;
    for (let i = start, j = p - 1; i < j; i++, j--) {
      const t = buf[i] as number;
      buf[i] = buf[j] as number;
      buf[j] = t;
    }
  }
  /** An integer zero-padded to `width` digits. */
  padded(n: number, width: number): void {
    const buf = this.buf;
    let v = n;
    for (let i = width - 1; i >= 0; i--) {
      const q = Math.floor(v / 10);
      buf[this.pos + i] = 48 + (v - q * 10);
      v = q;
    }
    this.pos += width;
  }
}

const LINE_SLACK = 4096;

/** "2024-03-05T08:01:09" from seconds since 2024-01-01 (30-day months: good enough here). */
function timestamp(w: Writer, t: number, sep: number): void {
  const day = Math.floor(t / 86400);
  const s = t - day * 86400;
  w.str("2024-");
  w.padded(1 + (Math.floor(day / 30) % 12), 2);
  w.byte(45);
  w.padded(1 + (day % 30), 2);
  w.byte(sep);
  w.padded(Math.floor(s / 3600), 2);
  w.byte(58);
  w.padded(Math.floor(s / 60) % 60, 2);
  w.byte(58);
  w.padded(s % 60, 2);
}

function words(w: Writer, r: () => number, v: Vocabulary, n: number, sep: number): void {
  for (let i = 0; i < n; i++) {
    if (i > 0) w.byte(sep);
    w.bytes(v.words[v.zipf[r() >>> 16] as number] as Uint8Array);
  }
}

type Kind = "csv" | "jsonl" | "log" | "f32" | "random";

function csvContent(size: number, r: () => number): Buffer {
  const v = getVocabulary();
  const w = new Writer(size + LINE_SLACK);
  w.str("id,time,user,amount,lat,lon,split,comment\n");
  let id = r() % 100000;
  let t = r() % (300 * 86400);
  while (w.pos < size) {
    w.uint(id++);
    w.byte(44);
    t += r() % 7;
    timestamp(w, t, 84);
    w.str("Z,");
    w.uint(v.zipf[r() >>> 16] as number);
    w.byte(44);
    w.uint(r() % 100000);
    w.byte(46);
    w.padded(r() % 100, 2);
    w.byte(44);
    w.uint(r() % 90);
    w.byte(46);
    w.padded(r() % 1000000, 6);
    w.str(",-");
    w.uint(r() % 180);
    w.byte(46);
    w.padded(r() % 1000000, 6);
    w.byte(44);
    w.bytes(CATEGORIES[r() % CATEGORIES.length] as Uint8Array);
    w.byte(44);
    words(w, r, v, 2 + (r() % 7), 32);
    w.byte(10);
  }
  return w.buf.subarray(0, size);
}

function jsonlContent(size: number, r: () => number): Buffer {
  const v = getVocabulary();
  const w = new Writer(size + LINE_SLACK);
  let id = r() % 1000000;
  let t = 1_704_067_200 + (r() % (300 * 86400));
  while (w.pos < size) {
    w.str('{"id":');
    w.uint(id++);
    w.str(',"ts":');
    t += r() % 5;
    w.uint(t);
    w.str(',"user":"');
    words(w, r, v, 2, 95);
    w.str('","event":"');
    w.bytes(EVENTS[r() % EVENTS.length] as Uint8Array);
    w.str('","value":');
    w.uint(r() % 10000);
    w.byte(46);
    w.padded(r() % 10000, 4);
    w.str(',"tags":["');
    const tags = 1 + (r() % 3);
    for (let i = 0; i < tags; i++) {
      if (i > 0) w.str('","');
      w.bytes(v.words[v.zipf[r() >>> 16] as number] as Uint8Array);
    }
    w.str('"],"text":"');
    words(w, r, v, 4 + (r() % 16), 32);
    w.str('"}\n');
  }
  return w.buf.subarray(0, size);
}

function logContent(size: number, r: () => number): Buffer {
  const v = getVocabulary();
  const w = new Writer(size + LINE_SLACK);
  let t = r() % (300 * 86400);
  while (w.pos < size) {
    t += r() % 3;
    timestamp(w, t, 32);
    w.byte(46);
    w.padded(r() % 1000, 3);
    w.byte(32);
    w.bytes(LEVELS[r() % LEVELS.length] as Uint8Array);
    w.str(" [worker-");
    w.uint(r() % 16);
    w.str("] ");
    w.bytes(MODULES[r() % MODULES.length] as Uint8Array);
    w.str(" - ");
    words(w, r, v, 3 + (r() % 10), 32);
    w.str(" id=");
    w.uint(r() % 10000000);
    w.str(" latency_ms=");
    w.uint(r() % 500);
    w.byte(10);
  }
  return w.buf.subarray(0, size);
}

/** A float32 random walk (little-endian): the exponents compress, the low mantissa bits not. */
function f32Content(size: number, r: () => number): Buffer {
  const count = Math.ceil(size / 4);
  const floats = new Float32Array(count);
  let x = 0;
  for (let i = 0; i < count; i++) {
    x += (r() / 4294967296 - 0.5) * 0.02;
    floats[i] = x;
  }
  return Buffer.from(floats.buffer, 0, size);
}

function content(kind: Kind, size: number, label: string): Buffer {
  const r = rng32(seedOf(label));
  switch (kind) {
    case "csv":
      return csvContent(size, r);
    case "jsonl":
      return jsonlContent(size, r);
    case "log":
      return logContent(size, r);
    case "f32":
      return f32Content(size, r);
    case "random":
      return randomBytesFor(label, size);
  }
}

// ---------------------------------------------------------------------------------------------
// Trees

const KINDS: { kind: Kind; weight: number; dir: string; ext: string }[] = [
  { kind: "csv", weight: 0.3, dir: "tables", ext: "csv" },
  { kind: "jsonl", weight: 0.25, dir: "events", ext: "jsonl" },
  { kind: "log", weight: 0.15, dir: "logs", ext: "log" },
  { kind: "f32", weight: 0.12, dir: "arrays", ext: "f32" },
  { kind: "random", weight: 0.18, dir: "images", ext: "jpg" },
];

function logUniform(r: () => number, min: number, max: number): number {
  return Math.round(Math.exp(Math.log(min) + (r() / 4294967296) * Math.log(max / min)));
}

/**
 * The mixed tree's file sequence, until `total` bytes (the last file is cut to fit). The same
 * sequence for every `total`: a smaller tree is a prefix of a larger one.
 */
function* mixLayout(total: number): Generator<{ path: string; size: number; kind: Kind }> {
  const r = rng32(seedOf("mix-layout"));
  let sum = 0;
  for (let i = 0; sum < total; i++) {
    const large = r() / 4294967296 < 0.07;
    let size = large ? logUniform(r, MiB, 64 * MiB) : logUniform(r, 1024, 256 * 1024);
    size = Math.min(size, total - sum);
    const u = r() / 4294967296;
    let acc = 0;
    let pick = KINDS[KINDS.length - 1] as (typeof KINDS)[number];
    for (const k of KINDS) {
      acc += k.weight;
      if (u < acc) {
        pick = k;
        break;
      }
    }
    const shard = `s${String(Math.floor(i / 48)).padStart(3, "0")}`;
    const name = `${pick.dir.slice(0, -1)}-${String(i).padStart(6, "0")}.${pick.ext}`;
    yield { path: `mix/${pick.dir}/${shard}/${name}`, size, kind: pick.kind };
    sum += size;
  }
}

function writeTreeFile(root: string, path: string, data: Buffer, madeDirs: Set<string>): void {
  const full = join(root, path);
  const dir = dirname(full);
  if (!madeDirs.has(dir)) {
    mkdirSync(dir, { recursive: true });
    madeDirs.add(dir);
  }
  const fd = openSync(full, "w", 0o644);
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
  } finally {
    closeSync(fd);
  }
  utimesSync(full, FIXED_MTIME, FIXED_MTIME);
}

function md5(data: Buffer): string {
  return createHash("md5").update(data).digest("hex");
}

/** Writes the mixed tree of `total` bytes under `root/mix/`; returns its manifest. */
function generateMix(root: string, total: number): ManifestEntry[] {
  const manifest: ManifestEntry[] = [];
  const madeDirs = new Set<string>();
  for (const f of mixLayout(total)) {
    const data = content(f.kind, f.size, f.path);
    writeTreeFile(root, f.path, data, madeDirs);
    manifest.push([f.path, f.size, md5(data)]);
  }
  fixDirTimes(root, madeDirs);
  return manifest;
}

/** Writes `count` files of `size` ± 25% random bytes under `root/small/`; returns the manifest. */
function generateSmall(root: string, count: number, size: number): ManifestEntry[] {
  const r = rng32(seedOf("small-layout"));
  const sizes = Array.from({ length: count }, () =>
    Math.max(1, Math.round(size * (0.75 + (r() / 4294967296) * 0.5))),
  );
  const all = randomBytesFor(
    "small",
    sizes.reduce((a, b) => a + b, 0),
  );
  const manifest: ManifestEntry[] = [];
  const madeDirs = new Set<string>();
  const width = Math.max(5, String(count - 1).length);
  let off = 0;
  for (let i = 0; i < count; i++) {
    const s = sizes[i] as number;
    const data = all.subarray(off, off + s);
    off += s;
    const dir = `c${String(Math.floor(i / 100)).padStart(Math.max(3, width - 2), "0")}`;
    const path = `small/${dir}/${String(i).padStart(width, "0")}.jpg`;
    writeTreeFile(root, path, data, madeDirs);
    manifest.push([path, s, md5(data)]);
  }
  fixDirTimes(root, madeDirs);
  return manifest;
}

function fixDirTimes(root: string, dirs: Set<string>): void {
  const all = new Set<string>();
  for (const d of dirs) {
    for (let p = d; p.length > root.length; p = dirname(p)) all.add(p);
  }
  for (const d of all) utimesSync(d, FIXED_MTIME, FIXED_MTIME);
}

// ---------------------------------------------------------------------------------------------
// Archives

/** Runs `bash -c script` (pipefail), throwing with its stderr on failure. */
function sh(script: string, cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", `set -euo pipefail; ${script}`], {
      cwd,
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (c: Buffer) => {
      err = (err + c.toString("utf8")).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`\`${script}\` in ${cwd} failed (exit ${code}): ${err.trim()}`));
    });
  });
}

const TAR_FLAGS = `--sort=name --owner=0 --group=0 --numeric-owner --mtime=@${FIXED_MTIME} --format=gnu`;

function q(s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`;
}

export function parametersKey(o: DataOptions): string {
  return `${DATA_VERSION}-mix${o.size}-bz${o.bz2Size}-xz${o.xzLevel}-small${o.smallCount}x${o.smallSize}`;
}

export function dataRoot(): string {
  return join(process.env.DSFETCH_BENCH_DIR || tmpdir(), "dsfetch-archive-data");
}

interface Spec {
  format: Format;
  key: string;
  name: string;
  tree: "mix" | "mix-bz2" | "small";
  make: (tree: string, out: string) => { script: string; made: string };
}

function specs(o: DataOptions): Spec[] {
  const gz = which("pigz") ? "pigz" : "gzip";
  const bz = which("lbzip2") ? "lbzip2" : "bzip2";
  return [
    {
      format: "gz",
      key: "mix.tar.gz",
      name: "mix",
      tree: "mix",
      make: (tree, out) => ({
        script: `tar -C ${q(tree)} ${TAR_FLAGS} -cf - mix | ${gz} -6 > ${q(out)}`,
        made: `\`tar -cf - mix | ${gz} -6\``,
      }),
    },
    {
      format: "xz",
      key: "mix.tar.xz",
      name: "mix",
      tree: "mix",
      make: (tree, out) => ({
        script: `tar -C ${q(tree)} ${TAR_FLAGS} -cf - mix | xz -T0 -${o.xzLevel} > ${q(out)}`,
        made: `\`tar -cf - mix | xz -T0 -${o.xzLevel}\``,
      }),
    },
    {
      format: "bz2",
      key: "mix-bz2.tar.bz2",
      name: "mix-bz2",
      tree: "mix-bz2",
      make: (tree, out) => ({
        script: `tar -C ${q(tree)} ${TAR_FLAGS} -cf - mix | ${bz} -9 > ${q(out)}`,
        made: `\`tar -cf - mix | ${bz} -9\` (the first ${fmtBytes(o.bz2Size)} of the same file sequence)`,
      }),
    },
    {
      format: "zip",
      key: "mix.zip",
      name: "mix",
      tree: "mix",
      // zip walks in readdir order; -X leaves out extra attributes (uid/gid, times).
      make: (tree, out) => ({
        script: `cd ${q(tree)} && zip -qr -X ${q(out)} mix`,
        made: "`zip -qr -X out.zip mix` (deflate -6)",
      }),
    },
    {
      format: "tar",
      key: "small.tar",
      name: "small",
      tree: "small",
      make: (tree, out) => ({
        script: `tar -C ${q(tree)} ${TAR_FLAGS} -cf ${q(out)} small`,
        made: "`tar -cf out.tar small`",
      }),
    },
  ];
}

function firstLine(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (c: Buffer) => {
      text += c.toString("utf8");
    });
    child.stderr.on("data", (c: Buffer) => {
      text += c.toString("utf8");
    });
    child.on("error", () => resolve(`${bin} (version unknown)`));
    child.on("close", () =>
      resolve(
        text
          .split("\n")
          .map((l) => l.trim())
          .find((l) => /\d+\.\d+/.test(l)) ?? bin,
      ),
    );
  });
}

/**
 * The archives of `formats`, from the cache or built now. Trees are generated only when an
 * archive is missing; they are removed at the end.
 */
export async function prepareArchives(
  o: DataOptions,
  formats: readonly Format[],
  log: Log,
): Promise<PreparedData> {
  const dir = join(dataRoot(), parametersKey(o));
  mkdirSync(dir, { recursive: true });
  const trees = join(dir, "trees");
  const manifests: Record<Spec["tree"], string> = {
    mix: join(dir, "mix.manifest.json"),
    "mix-bz2": join(dir, "mix-bz2.manifest.json"),
    small: join(dir, "small.manifest.json"),
  };
  const archives = new Map<Format, ArchiveInfo>();
  const generated = new Set<Spec["tree"]>();

  const ensureTree = async (tree: Spec["tree"]): Promise<string> => {
    const root = join(trees, tree);
    if (generated.has(tree)) return root;
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    const t = performance.now();
    const manifest =
      tree === "mix"
        ? generateMix(root, o.size)
        : tree === "mix-bz2"
          ? generateMix(root, o.bz2Size)
          : generateSmall(root, o.smallCount, o.smallSize);
    await writeFile(manifests[tree], JSON.stringify(manifest));
    generated.add(tree);
    const bytes = manifest.reduce((a, e) => a + e[1], 0);
    log(
      `bench: generated the ${tree} tree: ${manifest.length} files, ${fmtBytes(bytes)}, in ${((performance.now() - t) / 1000).toFixed(1)}s`,
    );
    return root;
  };

  for (const spec of specs(o)) {
    if (!formats.includes(spec.format)) continue;
    const file = join(dir, spec.key);
    const infoFile = `${file}.json`;
    if (!o.regenerate && existsSync(file) && existsSync(infoFile)) {
      const info = JSON.parse(readFileSync(infoFile, "utf8")) as ArchiveInfo;
      if (info.file === file && statSync(file).size === info.bytes) {
        archives.set(spec.format, info);
        log(`bench: cached ${file} (${fmtBytes(info.bytes)})`);
        continue;
      }
    }
    const tree = await ensureTree(spec.tree);
    const tmp = `${file}.tmp-${process.pid}`;
    const { script, made } = spec.make(tree, tmp);
    log(`bench: making ${spec.key}: ${script}`);
    const t = performance.now();
    await sh(script, dir);
    const seconds = (performance.now() - t) / 1000;
    await rename(tmp, file);
    const manifest = JSON.parse(readFileSync(manifests[spec.tree], "utf8")) as ManifestEntry[];
    const tools = await Promise.all(
      made
        .match(/\b(pigz|gzip|xz|lbzip2|bzip2|zip|tar)\b/g)
        ?.filter((x, i, a) => a.indexOf(x) === i)
        .map((b) => firstLine(b, b === "zip" ? ["-v"] : ["--version"])) ?? [],
    );
    const info: ArchiveInfo = {
      format: spec.format,
      file,
      key: spec.key,
      name: spec.name,
      bytes: statSync(file).size,
      expandedBytes: manifest.reduce((a, e) => a + e[1], 0),
      files: manifest.length,
      manifest: manifests[spec.tree],
      made: `${made}; ${tools.join("; ")}`,
      seconds,
    };
    await writeFile(infoFile, JSON.stringify(info, null, 2));
    archives.set(spec.format, info);
    log(
      `bench: made ${spec.key}: ${fmtBytes(info.bytes)} (${(info.bytes / MiB).toFixed(0)} MiB) from ${info.files} files, ${(info.expandedBytes / MiB).toFixed(0)} MiB, in ${seconds.toFixed(1)}s`,
    );
  }
  // The 20,000-file tree stays: removing it would slow file creation on ext4 without a journal
  // for the next 3000 s (see "Removing outputs" in bench/common.ts). The mixed trees have few files.
  for (const tree of ["mix", "mix-bz2"])
    await rm(join(trees, tree), { recursive: true, force: true });
  return { dir, archives };
}

export function readManifest(path: string): ManifestEntry[] {
  return JSON.parse(readFileSync(path, "utf8")) as ManifestEntry[];
}
