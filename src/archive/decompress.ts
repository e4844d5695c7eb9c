/**
 * Decompressors as async-iterable transforms: compressed chunks in, decompressed chunks
 * out, with backpressure both ways and bounded memory.
 *
 * Which implementation, and why (../shared/MEASURED.md, 512 MiB of mixed data, 2 cores):
 * - gzip: always node:zlib, with a 1 MiB output chunkSize (1.9 s, against 5.9 s with the
 *   defaults, 3.4 s for pigz and 4.1 s for gzip -dc): its raw inflate, the members' framing
 *   read by gunzip.ts, whose trailers' CRCs come from the consumer's when it keeps one (the
 *   tar extraction's: not computed twice). Concatenated members are decoded as one stream;
 *   bytes after the gzip stream that are not a member are an error saying so (how many,
 *   from where), zeros excepted.
 * - xz: the `xz` program (`-dc -T0`: 5.9 s on multi-block files, 10.8 s single-threaded),
 *   with `--memlimit-decompress` against xz bombs; else `pixz -d` (5.5 s, but no memory
 *   limit, hence second); else the npm package lzma-native (20-23 s), loaded only if
 *   installed.
 * - bzip2: `lbzip2 -dc` (9.5 s with 2 threads), else `bzip2 -dc` (25.8 s), else the npm
 *   package unbzip2-stream (105 s), loaded only if installed. Bytes after the last stream,
 *   which the programs ignore, are an error, zeros excepted (bzip2-end.ts). unbzip2-stream
 *   fails inside stream.pipeline with ERR_STREAM_PREMATURE_CLOSE, so library streams are
 *   joined with `.pipe()`.
 * Programs are found on PATH once (cached). Corrupt or truncated data, and a program's
 * non-zero exit, fail with ARCHIVE_INVALID naming the codec and what the decoder said; a
 * program killed by a signal dsfetch did not send (the out-of-memory killer) is TRANSIENT.
 * Errors of the source (network, abort) pass through unchanged.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { delimiter, join } from "node:path";
import { PassThrough, Readable, type Writable } from "node:stream";
import { DsfetchError } from "../errors.ts";
import { killChild } from "../util/kill-child.ts";
import { Bzip2End } from "./bzip2-end.ts";
import { GzipFramingError, GzipTrailingData, gunzip, type TakenCrcSource } from "./gunzip.ts";
import { openProgramOutput } from "./program-output.ts";

export type Codec = "gzip" | "bzip2" | "xz";

export type DecompressorVia =
  | "node:zlib"
  | "xz"
  | "pixz"
  | "lbzip2"
  | "bzip2"
  | "lzma-native"
  | "unbzip2-stream";

/** Which implementation decodes a codec on this machine. */
export interface Decompressor {
  readonly codec: Codec;
  /** "none": neither a program nor a library is available (decompress() then fails). */
  readonly via: DecompressorVia | "none";
  /** The program's command line, when `via` is a program. */
  readonly command?: readonly string[];
}

export interface DecompressorChoice {
  /** Programs first (default: they are faster), or the npm libraries first. */
  prefer?: "native" | "library" | undefined;
  /** The PATH to search for programs (default: process.env.PATH). */
  searchPath?: string | undefined;
  /** xz's --memlimit-decompress in bytes (default 1 GiB). */
  xzMemoryLimit?: number | undefined;
}

export interface DecompressOptions extends DecompressorChoice {
  signal?: AbortSignal | undefined;
  /** The dataset's name, for messages. */
  dataset?: string | undefined;
  /**
   * The source reuses a chunk's memory once the next chunk is asked for (an extraction
   * thread gives its input batches back then: extract-worker.ts). A program is done with a
   * chunk by then (throughProgram waits until the chunk is in the pipe); a stream
   * decompressor may still hold it, so the chunks are copied for those.
   */
  inputReused?: boolean | undefined;
  /**
   * gzip: where the consumer tells the CRC-32 of the bytes it took (tar-extract.ts keeps one
   * for its files' digests): the members' trailers are checked against it, and not computed a
   * second time here (gunzip.ts).
   */
  taken?: TakenCrcSource | undefined;
}

export const DEFAULT_XZ_MEMORY_LIMIT = 2 ** 30;
/** zlib output chunk size: 1 MiB was 3x faster than the 16 KiB default (MEASURED.md). */
const ZLIB_CHUNK = 1 << 20;
/**
 * Input given to a stream decompressor per write, and decompressed output it may hold
 * before the reader takes it. Each write is one trip to the thread pool and back per
 * output chunk: 64 KiB network reads written one by one made 8x more trips. A 1 GiB .tar.gz
 * extracted from a local file here: 4.1-4.2 s with 64 KiB writes, 3.6 s with 1 MiB, 3.3 s
 * with 4 MiB and 8 MiB of output buffered (zlib alone, output discarded: 3.2 s).
 */
export const STREAM_INPUT_BATCH = 4 << 20;
const STREAM_OUTPUT_BUFFER = 8 << 20;
const STDERR_KEEP = 4096;
/**
 * How long endDecompressors() waits for the programs it kills to exit: less than the grace an
 * extraction thread is given to answer once told to stop (thread-ending.ts STOP_GRACE_MS).
 */
export const DECOMPRESSOR_EXIT_WAIT_MS = 2_000;

/**
 * The decompressor programs this thread started that have not exited yet, and whether we
 * signalled them (their exit then says nothing about the data, nor about the machine).
 */
const running = new Map<ChildProcess, { signalled: boolean }>();

/**
 * Kills the decompressor programs this thread started that are still running, and waits (at
 * most `waitMs`) until each has exited, which is when Node reaps it. An extraction thread calls
 * this before it answers with its error: the main thread then ends the thread, and a child
 * killed but not yet reaped stayed a zombie (`[xz] <defunct>`) until the process exited, one
 * per failed .tar.xz or .tar.bz2 (review, 2026-12-06). A program the failure already killed is
 * only waited for. One in uninterruptible sleep may outlast the wait: it is left to the process.
 */
export async function endDecompressors(waitMs = DECOMPRESSOR_EXIT_WAIT_MS): Promise<void> {
  const exits: Promise<void>[] = [];
  for (const [child, state] of running) {
    if (killChild(child, "SIGKILL")) state.signalled = true;
    // Still in `running`: its "exit" has not been emitted yet.
    exits.push(new Promise<void>((resolve) => child.once("exit", () => resolve())));
  }
  if (exits.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(exits),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    }),
  ]);
  clearTimeout(timer);
}

interface Candidate {
  readonly via: DecompressorVia;
  readonly kind: "program" | "library" | "builtin";
}

const NATIVE: Record<Codec, readonly Candidate[]> = {
  gzip: [{ via: "node:zlib", kind: "builtin" }],
  xz: [
    { via: "xz", kind: "program" },
    { via: "pixz", kind: "program" },
  ],
  bzip2: [
    { via: "lbzip2", kind: "program" },
    { via: "bzip2", kind: "program" },
  ],
};

const LIBRARY: Record<Codec, readonly Candidate[]> = {
  gzip: [],
  xz: [{ via: "lzma-native", kind: "library" }],
  bzip2: [{ via: "unbzip2-stream", kind: "library" }],
};

const programCache = new Map<string, string | undefined>();
const libraryCache = new Map<string, boolean>();

/**
 * Programs that share a name with one dsfetch cannot drive: the long options dsfetch gives
 * `xz` (--memlimit-decompress, --threads, --format) are XZ Utils'. BusyBox's `xz` applet
 * (Alpine, slim images; `xz -d [-cfk]` only) refused them ("unrecognized option
 * '--decompress'", exit 1), and every .tar.xz failed as a corrupt archive (ARCHIVE_INVALID,
 * exit 8) where pixz or lzma-native would have expanded it; its decoder has no memory limit
 * either. Found in review, 2026-12-07, with BusyBox 1.35's `xz`.
 */
const IDENTITY: Partial<Record<string, (path: string) => boolean>> = {
  xz: (path) => versionSays(path, "XZ Utils"),
};

/** Whether `path --version` exits 0 saying `text` (asked once per path, within 5 s). */
function versionSays(path: string, text: string): boolean {
  const ran = spawnSync(path, ["--version"], {
    encoding: "utf8",
    timeout: 5_000,
    // SIGTERM could be ignored, and spawnSync waits for the exit.
    killSignal: "SIGKILL",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
  });
  return ran.status === 0 && `${ran.stdout}${ran.stderr}`.includes(text);
}

/**
 * The absolute path of `name` on `searchPath`, or undefined: the first one that is a file
 * dsfetch can run and, for a name in IDENTITY, the program it expects. Cached per (PATH, name).
 */
export function findProgram(name: string, searchPath = process.env.PATH ?? ""): string | undefined {
  const key = `${searchPath}\0${name}`;
  if (programCache.has(key)) return programCache.get(key);
  let found: string | undefined;
  for (const dir of searchPath.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile() && (IDENTITY[name]?.(candidate) ?? true)) {
        found = candidate;
        break;
      }
    } catch {
      // not here
    }
  }
  programCache.set(key, found);
  return found;
}

/** Whether an npm package can be loaded from here. Cached. */
export function libraryAvailable(name: string): boolean {
  const cached = libraryCache.get(name);
  if (cached !== undefined) return cached;
  let ok = false;
  try {
    createRequire(import.meta.url).resolve(name);
    ok = true;
  } catch {
    ok = false;
  }
  libraryCache.set(name, ok);
  return ok;
}

function commandFor(via: DecompressorVia, path: string, choice: DecompressorChoice): string[] {
  switch (via) {
    case "xz":
      return [
        path,
        "--decompress",
        "--stdout",
        "--format=xz",
        "--threads=0",
        `--memlimit-decompress=${choice.xzMemoryLimit ?? DEFAULT_XZ_MEMORY_LIMIT}`,
      ];
    case "pixz":
      return [path, "-d"];
    case "lbzip2":
      return [path, "-d", "-c", `-n${Math.min(4, Math.max(1, availableParallelism()))}`];
    case "bzip2":
      return [path, "-d", "-c"];
    default:
      return [path];
  }
}

/** Which implementation decompress() would use for `codec` here. */
export function decompressorFor(codec: Codec, choice: DecompressorChoice = {}): Decompressor {
  const order =
    choice.prefer === "library"
      ? [...LIBRARY[codec], ...NATIVE[codec]]
      : [...NATIVE[codec], ...LIBRARY[codec]];
  for (const candidate of order) {
    if (candidate.kind === "builtin") return { codec, via: candidate.via };
    if (candidate.kind === "library") {
      if (libraryAvailable(candidate.via)) return { codec, via: candidate.via };
      continue;
    }
    const path = findProgram(candidate.via, choice.searchPath);
    if (path !== undefined) {
      return { codec, via: candidate.via, command: commandFor(candidate.via, path, choice) };
    }
  }
  return { codec, via: "none" };
}

/**
 * Decompresses `source`. Lazy: nothing starts until the result is iterated. Stopping the
 * iteration early (break, throw) kills a decompressing program and destroys the streams.
 * A chunk is valid only until the next one is asked for (a program's output is read into
 * reused memory, program-output.ts): copy what you keep.
 */
export function decompress(
  codec: Codec,
  source: AsyncIterable<Buffer>,
  options: DecompressOptions = {},
): AsyncIterable<Buffer> {
  // bzip2 decoders ignore bytes after the last stream; zlib and xz refuse them (bzip2-end.ts).
  if (codec === "bzip2") {
    const end = new Bzip2End();
    return end.afterDecoding(decompressWith(codec, end.watch(source), options), options.dataset);
  }
  return decompressWith(codec, source, options);
}

function decompressWith(
  codec: Codec,
  input: AsyncIterable<Buffer>,
  options: DecompressOptions,
): AsyncIterable<Buffer> {
  let source = input;
  const decompressor = decompressorFor(codec, options);
  // gunzip.ts is done with a chunk before it asks for the next one: not copied.
  if (
    options.inputReused === true &&
    decompressor.command === undefined &&
    decompressor.via !== "node:zlib"
  ) {
    source = ownCopies(source, STREAM_INPUT_BATCH);
  }
  switch (decompressor.via) {
    case "none":
      return failing(unavailable(codec, options.dataset));
    case "node:zlib":
      return gzipDecoded(decompressor, source, options);
    case "lzma-native":
      return throughStream(decompressor, source, options, async () => {
        const lzma = await loadLibrary("lzma-native", codec, options.dataset);
        return lzma.createDecompressor({
          memlimit: options.xzMemoryLimit ?? DEFAULT_XZ_MEMORY_LIMIT,
        });
      });
    case "unbzip2-stream":
      return throughStream(decompressor, source, options, async () => {
        const unbzip2 = await loadLibrary("unbzip2-stream", codec, options.dataset);
        return (typeof unbzip2 === "function" ? unbzip2 : unbzip2.default)();
      });
    default:
      return throughProgram(decompressor, source, options);
  }
}

/** Bytes read on past refused gzip data to say how many follow its stream, at most. */
const TRAILING_COUNT_BYTES = 16 << 20;

/**
 * gzip through gunzip.ts (node:zlib's raw inflate, the framing read there), its refusals said
 * as the other decoders' are. Its trailers are checked against the consumer's CRC-32 of what
 * it took when the consumer keeps one (options.taken), else against one computed there.
 */
async function* gzipDecoded(
  decompressor: Decompressor,
  source: AsyncIterable<Buffer>,
  options: DecompressOptions,
): AsyncGenerator<Buffer> {
  const { signal } = options;
  signal?.throwIfAborted();
  try {
    yield* gunzip(source, {
      signal,
      taken: options.taken,
      chunkSize: ZLIB_CHUNK,
      outputBuffer: STREAM_OUTPUT_BUFFER,
      inputBatch: STREAM_INPUT_BATCH,
      trailingCountBytes: TRAILING_COUNT_BYTES,
    });
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (error instanceof GzipTrailingData) {
      throw trailingGzipData(options.dataset, error.total, error.whole, error.end);
    }
    if (error instanceof GzipFramingError || isZlibError(error)) {
      throw corrupt(decompressor, options, error.message, error);
    }
    throw error;
  }
}

/** An error of node:zlib's (its `code` is zlib's: Z_DATA_ERROR, Z_BUF_ERROR, …). */
function isZlibError(error: unknown): error is Error {
  return (
    error instanceof Error &&
    typeof (error as { errno?: unknown }).errno === "number" &&
    String((error as { code?: unknown }).code).startsWith("Z_")
  );
}

/**
 * Bytes after the gzip stream that are not a member (nor zeros), from `end` (where the stream
 * ends) on.
 *
 * Refused, not ignored as GNU gzip does ("decompression OK, trailing garbage ignored", exit
 * status 2, with which GNU tar stops: "Child returned status 2"): they are not the archive's,
 * and what else was done to it is not known. Refused appended bytes read "the gzip data is
 * corrupt or truncated" for a whole archive (exploratory review, 2026-12-07); bytes after a
 * NUL were dropped without a word by zlib's gunzip (review, 2026-12-06).
 */
function trailingGzipData(
  dataset: string | undefined,
  total: number,
  /** `total` is the whole source (else: what was read of it, the source going on). */
  whole: boolean,
  end: number,
): DsfetchError {
  const plural = (n: number) => `${n} byte${n === 1 ? "" : "s"}`;
  const of = whole ? `of ${total}` : `of more than ${total}: not read to its end`;
  return new DsfetchError(
    "ARCHIVE_INVALID",
    `${datasetPrefix(dataset)}the gzip data has ${whole ? "" : "more than "}${plural(total - end)} after the end of the gzip stream (at byte ${end} ${of}) that are not a gzip member`,
    {
      dataset,
      hint: `nothing was published. The gzip stream before them is whole (its CRC checked): something was appended to the archive, or it was damaged. GNU tar extracts such an archive, but gzip warns "decompression OK, trailing garbage ignored" and tar exits with status 2; dsfetch refuses it (zeros alone are accepted there: padding): cut them off (\`head -c ${end} <file> > fixed.tar.gz\`, then \`gzip -t fixed.tar.gz\`) or re-create the archive, and upload it again`,
    },
  );
}

/**
 * How a decoder's refusal's hint starts: it cannot tell the store's damage from the network's.
 * Once the object's bytes are known to match its ETag, stage/expand.ts says it is the store's.
 */
export const DAMAGED_IN_STORE_OR_ON_THE_WAY =
  "nothing was published; the archive is damaged in the store or was damaged on the way: run again, and if it fails the same way ";

function datasetPrefix(dataset: string | undefined): string {
  return dataset === undefined ? "" : `${dataset}: `;
}

function unavailable(codec: Codec, dataset: string | undefined): DsfetchError {
  const program = codec === "xz" ? "xz (package xz-utils)" : "bzip2 (package bzip2, or lbzip2)";
  const library = codec === "xz" ? "lzma-native" : "unbzip2-stream";
  return new DsfetchError(
    "UNSUPPORTED",
    `${datasetPrefix(dataset)}cannot decompress ${codec} data: neither the ${codec === "xz" ? "xz or pixz" : "lbzip2 or bzip2"} program nor the npm package ${library} is available`,
    {
      dataset,
      hint: `install ${program} (e.g. apt-get install -y ${codec === "xz" ? "xz-utils" : "bzip2"}), or npm install ${library}`,
    },
  );
}

// biome-ignore lint/suspicious/noExplicitAny: untyped optional CommonJS packages
async function loadLibrary(name: string, codec: Codec, dataset: string | undefined): Promise<any> {
  try {
    const loaded = await import(name);
    return loaded.default ?? loaded;
  } catch (error) {
    const failure = unavailable(codec, dataset);
    throw new DsfetchError(failure.code, failure.message, {
      dataset,
      hint: failure.hint,
      cause: error,
    });
  }
}

/**
 * Signals a program raises itself when it crashes (a bad pointer, an abort() on a failed
 * check): not sent by the out-of-memory killer nor by anyone stopping it.
 */
const CRASHES = new Set<NodeJS.Signals>([
  "SIGSEGV",
  "SIGBUS",
  "SIGILL",
  "SIGFPE",
  "SIGABRT",
  "SIGSYS",
  "SIGTRAP",
]);

/**
 * A decompressor program that crashed: on the data it was given, since the same program
 * decodes sound archives. pixz 1.0.7 reading a pipe dies of SIGSEGV on a block header that
 * declares a huge compressed size (an unchecked realloc; review, session 37), which was
 * TRANSIENT ("nothing says the archive is damaged: run again") and retried to the same crash.
 * ARCHIVE_INVALID: not retried, and confirmed against the store like a corrupt archive.
 */
function crashed(
  decompressor: Decompressor,
  options: DecompressOptions,
  pid: number | undefined,
  signal: NodeJS.Signals,
  said: string,
): DsfetchError {
  const { codec, via } = decompressor;
  const { dataset } = options;
  const check = codec === "gzip" ? "gzip -t" : codec === "xz" ? "xz -t" : "bzip2 -t";
  return new DsfetchError(
    "ARCHIVE_INVALID",
    `${datasetPrefix(dataset)}${codec} decompression failed: ${via}${pid === undefined ? "" : ` (pid ${pid})`} crashed (${signal}) on this data${said === "" ? "" : `; it said: ${said}`}`,
    {
      dataset,
      hint: `nothing was published; a decompressor crashes on damaged or hostile data: check a local copy of the archive with \`${check} <file>\`, and re-create or re-upload it; if that check passes, the program is at fault: report its crash (\`${via} --version\`)`,
    },
  );
}

/**
 * A decompressor program killed by a signal: by the out-of-memory killer, most likely (the
 * container's memory limit), or by someone else. Not a property of the archive: it was
 * ARCHIVE_INVALID with the hint to re-upload the archive (review, 2026-12-06), which also
 * made the staging ask the store to confirm it and record it against the object. TRANSIENT
 * and retryable: another try, with more memory or less beside it, may well succeed.
 */
function killed(
  decompressor: Decompressor,
  options: DecompressOptions,
  pid: number | undefined,
  signal: NodeJS.Signals,
  byUs: boolean,
  said: string,
): DsfetchError {
  const { codec, via } = decompressor;
  const { dataset } = options;
  // SIGKILL is what the out-of-memory killer sends; another signal is someone else's.
  const who = byUs
    ? ""
    : `, which dsfetch did not send${signal === "SIGKILL" ? " (the out-of-memory killer, most likely)" : ""}`;
  const memory =
    via === "xz"
      ? `xz may use up to ${options.xzMemoryLimit ?? DEFAULT_XZ_MEMORY_LIMIT} bytes to decompress (dsfetch runs it with --memlimit-decompress) besides dsfetch's own memory`
      : `${via} has no memory limit of its own (xz, when installed, runs with one)`;
  return new DsfetchError(
    "TRANSIENT",
    `${datasetPrefix(dataset)}${codec} decompression failed: ${via}${pid === undefined ? "" : ` (pid ${pid})`} was killed by ${signal}${who}${said === "" ? "" : `; it said: ${said}`}`,
    {
      dataset,
      hint: `nothing was published, and nothing says the archive is damaged: run again; if it is killed again, check the container's memory limit (dmesg or the container's events show the out-of-memory killer) and give it more memory: ${memory}`,
      retryable: true,
    },
  );
}

function corrupt(
  decompressor: Decompressor,
  options: DecompressOptions,
  detail: string,
  cause?: unknown,
): DsfetchError {
  const { codec, via } = decompressor;
  const { dataset } = options;
  if (codec === "xz" && /memory usage limit/i.test(detail)) {
    // An xz bomb, or a stream compressed with a huge dictionary (up to 1.5 GiB per thread).
    return new DsfetchError(
      "ARCHIVE_INVALID",
      // Not xz's own text: xz 5.4.1 (Debian 12) says "1 MiB of memory is required" whatever
      // the stream needs (review, 2026-12-05), which contradicted this message.
      `${datasetPrefix(dataset)}the xz data needs more memory to decompress than the limit of ${options.xzMemoryLimit ?? DEFAULT_XZ_MEMORY_LIMIT} bytes (${via} refused it: memory usage limit reached)`,
      {
        dataset,
        hint: "nothing was published: re-compress the archive with a smaller dictionary (xz -6 or lower), e.g. `xz -dc a.tar.xz | xz -6 -T0 > b.tar.xz`",
        cause,
      },
    );
  }
  return new DsfetchError(
    "ARCHIVE_INVALID",
    `${datasetPrefix(dataset)}the ${codec} data is corrupt or truncated (${via}: ${detail})`,
    {
      dataset,
      // Decoders check their own CRCs and fail before our end-to-end check of the whole
      // object can run: a byte damaged in transit looks exactly like a damaged archive.
      hint: `${DAMAGED_IN_STORE_OR_ON_THE_WAY}re-create or re-upload it (\`${codec} -t <file>\` checks a local copy)`,
      cause,
    },
  );
}

async function* failing(error: Error): AsyncGenerator<Buffer> {
  yield* [];
  throw error;
}

/** Runs a Node stream transform (zlib or a library) over `source`, joined with .pipe(). */
async function* throughStream(
  decompressor: Decompressor,
  source: AsyncIterable<Buffer>,
  options: DecompressOptions,
  make: () => Promise<NodeJS.ReadWriteStream>,
): AsyncGenerator<Buffer> {
  const { signal } = options;
  signal?.throwIfAborted();
  const transform = await make();
  const input = Readable.from(batches(source, STREAM_INPUT_BATCH), { objectMode: false });
  // Old-style streams (unbzip2-stream is a `through` stream) are not async-iterable: read
  // them through a PassThrough. zlib streams are read directly.
  const output: Readable =
    transform instanceof Readable ? transform : transform.pipe(new PassThrough());
  let sourceError: unknown;
  let transformError: unknown;
  const destroyAll = (error?: Error) => {
    input.destroy();
    (transform as unknown as Writable).destroy?.();
    output.destroy(error);
  };
  input.on("error", (error) => {
    sourceError = error;
    destroyAll(error);
  });
  transform.on("error", (error: Error) => {
    transformError ??= error;
    destroyAll(error);
  });
  const onAbort = () => destroyAll(signal?.reason instanceof Error ? signal.reason : undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  input.pipe(transform as unknown as Writable);
  try {
    for await (const chunk of output) yield chunk as Buffer;
  } catch (error) {
    if (sourceError !== undefined) throw sourceError;
    if (signal?.aborted) throw signal.reason;
    const cause = transformError ?? error;
    throw corrupt(decompressor, options, messageOf(cause), cause);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    destroyAll();
  }
  if (sourceError !== undefined) throw sourceError;
  if (signal?.aborted) throw signal.reason;
  if (transformError !== undefined) {
    throw corrupt(decompressor, options, messageOf(transformError), transformError);
  }
}

/** Runs a program (`xz -dc`, …): stdin fed from `source` with backpressure, stdout yielded. */
async function* throughProgram(
  decompressor: Decompressor,
  source: AsyncIterable<Buffer>,
  options: DecompressOptions,
): AsyncGenerator<Buffer> {
  const { signal, dataset } = options;
  signal?.throwIfAborted();
  const [file, ...args] = decompressor.command ?? [];
  if (file === undefined) throw unavailable(decompressor.codec, dataset);
  const output = await openProgramOutput();
  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      stdio: ["pipe", output?.childEnd ?? "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
  } catch (error) {
    output?.close();
    throw error;
  }
  output?.childStarted();
  // Only a started child (a pid) exits and must be reaped: a failed spawn has neither.
  const tracked = { signalled: false };
  if (child.pid !== undefined) {
    running.set(child, tracked);
    child.once("exit", () => running.delete(child));
  }
  if (child.stdin == null || child.stderr == null) {
    // Its pipes could not be made: out of file descriptors (the spawn's "error" says EMFILE).
    // Not child.kill(): the spawn failed, and that would signal our whole process group.
    killChild(child, "SIGKILL");
    output?.close();
    throw new DsfetchError(
      "STORAGE",
      `${datasetPrefix(dataset)}cannot run ${file}: no pipes for it (out of file descriptors?)`,
      { dataset, hint: "raise the open-files limit (ulimit -n), or stage fewer datasets at once" },
    );
  }
  const stdin = child.stdin;
  const childStderr = child.stderr;
  let stderr = "";
  childStderr.setEncoding("utf8");
  childStderr.on("data", (text: string) => {
    if (stderr.length < STDERR_KEEP) stderr += text;
  });
  let spawnError: Error | undefined;
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("error", (error) => {
      spawnError = error;
      resolve({ code: null, signal: null });
    });
    child.once("close", (code, exitSignal) => resolve({ code, signal: exitSignal }));
  });
  // The program exiting early (corrupt data) breaks the pipe: its exit status says why.
  stdin.on("error", () => {});
  let stopped = false;
  let sourceError: unknown;
  let hasSourceError = false;
  const kill = () => {
    if (killChild(child, "SIGKILL")) tracked.signalled = true;
  };
  const iterator = source[Symbol.asyncIterator]();
  const pump = (async () => {
    try {
      while (!stopped) {
        const next = await iterator.next();
        if (next.done === true) break;
        if (stopped || stdin.destroyed) break;
        // Whole in the pipe before the next is asked for: the source may reuse its memory then
        // (DecompressOptions.inputReused). A write that returned true could still be queued.
        await written(stdin, next.value);
      }
      stdin.end();
    } catch (error) {
      hasSourceError = true;
      sourceError = error;
      kill();
    }
  })();
  const onAbort = () => {
    stopped = true;
    kill();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  let finished = false;
  try {
    for await (const chunk of output ?? (child.stdout as Readable)) yield chunk as Buffer;
    const exit = await closed;
    // A program that exited 0 has read its input to the end: the pump is done or about to be.
    if (exit.code === 0 && spawnError === undefined) {
      await pump;
      finished = true;
    }
    if (hasSourceError) throw sourceError;
    if (signal?.aborted) throw signal.reason;
    if (spawnError !== undefined) {
      throw new DsfetchError(
        "UNSUPPORTED",
        `${datasetPrefix(dataset)}cannot run ${file}: ${spawnError.message}`,
        { dataset, hint: "check the program's installation", cause: spawnError },
      );
    }
    if (exit.code !== 0) {
      const said = whatItSaid(decompressor, stderr);
      // A decoder refusing data exits with a status; a signal is from outside (those we send,
      // for a failed source or an abort, were answered above).
      if (exit.signal !== null) {
        if (!tracked.signalled && CRASHES.has(exit.signal)) {
          throw crashed(decompressor, options, child.pid, exit.signal, said);
        }
        throw killed(decompressor, options, child.pid, exit.signal, tracked.signalled, said);
      }
      throw corrupt(
        decompressor,
        options,
        `exit status ${exit.code}${said === "" ? "" : `: ${said}`}`,
      );
    }
  } finally {
    stopped = true;
    signal?.removeEventListener("abort", onAbort);
    if (!finished) {
      kill();
      // Stop reading the source too; its pending read (if any) settles on its own.
      Promise.resolve()
        .then(() => iterator.return?.())
        .catch(() => {});
      pump.catch(() => {});
    }
    stdin.destroy();
    child.stdout?.destroy();
    output?.close();
  }
}

/**
 * A program's stderr on one line, at most 600 characters, without what it says every time:
 * pixz reading a pipe starts with "can not seek in input: Illegal seek" (it tries to read its
 * file index from the end first), which named a seek as the cause of every failure (found in
 * session 37's review of the pixz path, used where xz is not installed).
 */
function whatItSaid(decompressor: Decompressor, stderr: string): string {
  const lines = stderr.split("\n").map((line) => line.trim());
  const kept =
    decompressor.via === "pixz"
      ? lines.filter((line) => line !== "can not seek in input: Illegal seek")
      : lines;
  return kept.join(" ").trim().replace(/\s+/g, " ").slice(0, 600);
}

/** Joins small chunks into chunks of at least `size` bytes (the last may be shorter). */
async function* batches(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of source) {
    if (length === 0 && chunk.length >= size) {
      yield chunk;
      continue;
    }
    parts.push(chunk);
    length += chunk.length;
    if (length >= size) {
      yield parts.length === 1 ? chunk : Buffer.concat(parts, length);
      parts = [];
      length = 0;
    }
  }
  if (length > 0) yield parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, length);
}

/**
 * Copies of `source`'s bytes in buffers of `size` (the last may be shorter), each chunk of
 * the source copied before the next is asked for: a stream decompressor may hold its input
 * after taking it. New buffers, not reused ones, for the same reason.
 */
async function* ownCopies(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let batch = Buffer.allocUnsafe(size);
  let fill = 0;
  for await (const bytes of source) {
    for (let at = 0; at < bytes.length; ) {
      const n = Math.min(batch.length - fill, bytes.length - at);
      batch.set(bytes.subarray(at, at + n), fill);
      fill += n;
      at += n;
      if (fill === batch.length) {
        yield batch;
        batch = Buffer.allocUnsafe(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield batch.subarray(0, fill);
}

/** Resolves once `chunk` is written out (or the stream failed or closed: nothing waits). */
function written(stream: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("close", done);
      resolve();
    };
    stream.on("close", done);
    stream.write(chunk, done);
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
