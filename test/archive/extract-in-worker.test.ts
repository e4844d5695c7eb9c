// extractTarInWorker(): the extraction thread of streaming archives. What the user sees must
// be what in-process extraction gives: the same files, the same errors (code, message, hint),
// the source's own error when the download fails, the abort reason on abort, and no thread
// left running.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Worker } from "node:worker_threads";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import {
  extractTarInWorker,
  startExtractThread,
  stopExtractThread,
} from "../../src/archive/extract-in-worker.ts";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";
import { DsfetchError } from "../../src/errors.ts";
import { childCommands } from "../harness/children.ts";
import {
  chunks,
  file,
  hasProgram,
  symlink,
  tar,
  type Workspace,
  workspace,
} from "./tar-helpers.ts";

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

function job(dest: string, compression: "none" | "gzip" = "none") {
  return { compression, destination: dest, limits: DEFAULT_LIMITS, dataset: "ds" } as const;
}

/** Many files of varied sizes, some bigger than a batch (1 MiB), in odd chunk sizes. */
function sampleArchive(count = 300): { archive: Buffer; files: Map<string, Buffer> } {
  const files = new Map<string, Buffer>();
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const size = i % 50 === 0 ? 1_500_000 + i : (i * 7919) % 40_000;
    // Random bytes: a batch lost, repeated or reordered inside a file shows.
    const data = randomBytes(size);
    const name = `dir${i % 7}/f${i}.bin`;
    files.set(name, data);
    parts.push(file(name, data));
  }
  return { archive: tar(...parts), files };
}

let sample: { archive: Buffer; files: Map<string, Buffer>; gzip: Buffer } | undefined;

/**
 * sampleArchive() and its gzip, made once for the file: 9 tests made their own (~15 MB of
 * random bytes, joined as a tar, 3 of them gzipped: ~4 s of CPU, 2026-12-07). Only read.
 */
function sharedSample(): { archive: Buffer; files: Map<string, Buffer>; gzip: Buffer } {
  if (sample === undefined) {
    const { archive, files } = sampleArchive();
    sample = { archive, files, gzip: gzipSync(archive) };
  }
  return sample;
}

/** The sample as it is, and gzip-compressed: the two ways the thread reads its input. */
function plainAndGzip() {
  const { archive, gzip } = sharedSample();
  return [
    ["none", archive],
    ["gzip", gzip],
  ] as const;
}

describe("extractTarInWorker", () => {
  it("extracts a plain and a gzip tar byte-exact, whatever the chunk sizes", async () => {
    const { files } = sharedSample();
    for (const [compression, bytes] of plainAndGzip()) {
      ws = workspace();
      const result = await extractTarInWorker(
        chunks(bytes, 1, 300_000, 7),
        job(ws.dest, compression),
      );
      expect(result.files).toHaveLength(files.size);
      expect(result.bytes).toBe([...files.values()].reduce((n, b) => n + b.length, 0));
      for (const [name, data] of files) {
        expect(readFileSync(join(ws.dest, name)).equals(data), name).toBe(true);
      }
      ws.cleanup();
      ws = undefined;
    }
  });

  it("runs on a thread started before its job was known, after the thread waited", async () => {
    ws = workspace();
    const { archive, files } = sharedSample();
    const thread = startExtractThread();
    // The thread is up and idle (no job yet) while the first range would download.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const result = await extractTarInWorker(chunks(archive, 65536), job(ws.dest), { thread });
    expect(result.files).toHaveLength(files.size);
    for (const [name, data] of files) {
      expect(readFileSync(join(ws.dest, name)).equals(data), name).toBe(true);
    }
    // extractTarInWorker ended the thread: a message to it goes nowhere, and no exit is pending.
    expect(thread.worker.threadId).toBe(-1);
  });

  it("a thread started ahead that died before its job: INTERNAL at once, not a STALLED minutes later", async () => {
    ws = workspace();
    const { archive } = sharedSample();
    const thread = startExtractThread();
    await stopExtractThread(thread);
    const error = await extractTarInWorker(chunks(archive, 65536), job(ws.dest), {
      thread,
      stallTimeoutMs: 30_000,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "INTERNAL" });
    expect((error as Error).message).toMatch(/extraction thread failed to start: exited with code/);
  });

  it("a thread that finishes right after an interrupt: the interrupt's reason, never a success", async () => {
    ws = workspace();
    // A stand-in thread that answers "done" to the end whatever it was told before.
    const worker = new Worker(
      `const { parentPort } = require("node:worker_threads");
       parentPort.on("message", (m) => {
         if (m.type === "bytes") parentPort.postMessage({ type: "taken", bytes: m.bytes.length });
         else if (m.type === "end") parentPort.postMessage({ type: "done", result: { files: { paths: "", sizes: new Float64Array(0) }, bytes: 0, writtenInParallel: 0 } });
       });`,
      { eval: true },
    );
    const abort = new AbortController();
    const reason = new Error("SIGTERM");
    async function* interruptedAtTheEnd(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(512);
      abort.abort(reason);
    }
    const outcome = await extractTarInWorker(interruptedAtTheEnd(), job(ws.dest), {
      thread: { worker },
      signal: abort.signal,
    }).catch((e: unknown) => e);
    expect(outcome).toBe(reason);
  });

  it("a thread started but never given a job ends with stopExtractThread, writing nothing", async () => {
    ws = workspace();
    const thread = startExtractThread();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await stopExtractThread(thread);
    expect(thread.worker.threadId).toBe(-1);
  });

  it("an already-aborted signal ends the given thread and throws the reason", async () => {
    ws = workspace();
    const thread = startExtractThread();
    const controller = new AbortController();
    const reason = new DsfetchError("INTERRUPTED", "interrupted by SIGINT");
    controller.abort(reason);
    await expect(
      extractTarInWorker(chunks(sharedSample().archive, 65536), job(ws.dest), {
        signal: controller.signal,
        thread,
      }),
    ).rejects.toBe(reason);
    expect(thread.worker.threadId).toBe(-1);
  });

  it("reports the extractor's refusal with its code, message and hint; nothing outside", async () => {
    ws = workspace();
    const before = ws.outside();
    const archive = tar(file("ok.txt", "fine"), symlink("link", "../../outside"));
    const error = await extractTarInWorker(chunks(archive, 100), job(ws.dest)).catch((e) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error.code).toBe("UNSAFE_PATH");
    expect(error.message).toContain('archive entry "link"');
    expect(error.message).toContain("outside the dataset directory");
    expect(error.hint).toContain("nothing was published");
    expect(error.dataset).toBe("ds");
    expect(ws.outside()).toEqual(before);
  });

  it("reports corrupt gzip data as ARCHIVE_INVALID naming the codec", async () => {
    ws = workspace();
    const gz = Buffer.from(sharedSample().gzip); // a copy: the shared one stays intact
    // The trailer's CRC-32: the tar itself decodes completely, only gzip can tell.
    gz[gz.length - 8] = (gz[gz.length - 8] ?? 0) ^ 1;
    const error = await extractTarInWorker(chunks(gz, 65536), job(ws.dest, "gzip")).catch((e) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error.code).toBe("ARCHIVE_INVALID");
    expect(error.message).toMatch(/gzip data is corrupt or truncated/);
  });

  it("rethrows the source's own error (a failed download), not an extraction error", async () => {
    ws = workspace();
    const { archive } = sharedSample();
    const failure = new DsfetchError("TRANSIENT", "connection reset after 3 retries");
    async function* broken(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 2_000_000);
      throw failure;
    }
    await expect(extractTarInWorker(broken(), job(ws.dest))).rejects.toBe(failure);
  });

  it("stops on abort with the signal's reason, even if the source ignores the signal", async () => {
    ws = workspace();
    const { archive } = sharedSample();
    const controller = new AbortController();
    const reason = new DsfetchError("INTERRUPTED", "interrupted by SIGTERM");
    let stop = false;
    async function* deaf(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 3_000_000);
      controller.abort(reason);
      // Keeps yielding slowly and never looks at the signal.
      for (let at = 3_000_000; at < archive.length && !stop; at += 1000) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        yield archive.subarray(at, at + 1000);
      }
    }
    const started = Date.now();
    await expect(
      extractTarInWorker(deaf(), job(ws.dest), { signal: controller.signal }),
    ).rejects.toBe(reason);
    stop = true;
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("answers with the extractor's error at once, while the source stalls", async () => {
    ws = workspace();
    // More than a batch (1 MiB), so that the bytes with the refusal reach the worker.
    const archive = tar(
      file("a.txt", "fine"),
      file("../evil", "x"),
      file("b.bin", randomBytes(1_500_000)),
    );
    let release: (() => void) | undefined;
    async function* stalling(): AsyncGenerator<Buffer> {
      yield archive;
      // The download stalls, then fails: neither may hide the refusal.
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      throw new DsfetchError("TRANSIENT", "network down");
    }
    const started = Date.now();
    const error = await extractTarInWorker(stalling(), job(ws.dest)).catch((e) => e);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(error.code).toBe("UNSAFE_PATH");
    expect(error.message).toContain('"../evil"');
    release?.();
  });

  it("carries expected and found across the thread (NO_SPACE)", async () => {
    ws = workspace();
    const archive = tar(file("a.bin", randomBytes(3000)), file("b.bin", randomBytes(3000)));
    const error = await extractTarInWorker(chunks(archive, 512), {
      ...job(ws.dest),
      limits: { ...DEFAULT_LIMITS, maxBytes: 4000 },
    }).catch((e) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error.code).toBe("NO_SPACE");
    expect(error.expected).toBe("at most 4000 bytes");
    expect(error.found).toBe("more than 6000 bytes");
    expect(error.hint).toMatch(/larger volume/);
  });

  it.runIf(hasProgram("xz"))(
    "runs xz in the worker: byte-exact, and the program is gone after an abort",
    async () => {
      ws = workspace();
      // A third of the sample, at xz's fastest preset: xz -1 took 7.5 s of the file's 17 s to
      // compress 15 MB of random bytes (2026-12-07); 5 MB at -0 take ~0.8 s.
      const { archive, files } = sampleArchive(100);
      const xz = execFileSync("xz", ["-0", "-c"], { input: archive, maxBuffer: 1 << 30 });
      const result = await extractTarInWorker(chunks(xz, 65536), {
        ...job(ws.dest),
        compression: "xz",
      });
      expect(result.files).toHaveLength(files.size);
      for (const [name, data] of files) {
        expect(readFileSync(join(ws.dest, name)).equals(data), name).toBe(true);
      }
      ws.cleanup();
      ws = workspace();
      const controller = new AbortController();
      const reason = new Error("stop");
      async function* halfThenWait(): AsyncGenerator<Buffer> {
        yield xz.subarray(0, xz.length >> 1);
        controller.abort(reason);
        await new Promise((resolve) => setTimeout(resolve, 100));
        controller.signal.throwIfAborted();
      }
      await expect(
        extractTarInWorker(
          halfThenWait(),
          { ...job(ws.dest), compression: "xz" },
          { signal: controller.signal },
        ),
      ).rejects.toBe(reason);
      // No xz left running as our child.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(childCommands()).not.toMatch(/^xz$/m);
    },
  );

  it("an archive that ends early is ARCHIVE_INVALID (truncated), from the worker", async () => {
    ws = workspace();
    const { archive } = sharedSample();
    const error = await extractTarInWorker(
      chunks(archive.subarray(0, 2_500_000), 65536),
      job(ws.dest),
    ).catch((e) => e);
    expect(error.code).toBe("ARCHIVE_INVALID");
    expect(error.message).toMatch(/truncated/);
    expect(existsSync(ws.dest)).toBe(true);
  });
});

describe("extractTarInWorker and chunks in shared memory", () => {
  it("reports bytes taken only once the thread no longer reads them (their memory is reused)", async () => {
    const { files } = sharedSample();
    for (const [compression, bytes] of plainAndGzip()) {
      ws = workspace();
      // Shared chunks of varied sizes, each overwritten as soon as it is reported taken.
      const shared: Buffer[] = [];
      const ends: number[] = [];
      for (let at = 0, i = 0; at < bytes.length; i++) {
        const n = Math.min([3_000_000, 1, 65_536, 777_777][i % 4] as number, bytes.length - at);
        const chunk = Buffer.from(new SharedArrayBuffer(n));
        bytes.copy(chunk, 0, at, at + n);
        shared.push(chunk);
        at += n;
        ends.push(at);
      }
      let taken = 0;
      let poisoned = 0;
      async function* source() {
        for (const chunk of shared) yield chunk;
      }
      const result = await extractTarInWorker(source(), job(ws.dest, compression), {
        onTaken: (n) => {
          taken += n;
          while (poisoned < shared.length && (ends[poisoned] as number) <= taken) {
            (shared[poisoned] as Buffer).fill(0xee);
            poisoned += 1;
          }
        },
      });
      expect(result.files).toHaveLength(files.size);
      for (const [name, data] of files) {
        expect(readFileSync(join(ws.dest, name)).equals(data), name).toBe(true);
      }
      // Every chunk was reported (and so reused) before the end.
      expect(taken).toBe(bytes.length);
      expect(poisoned).toBe(shared.length);
      ws.cleanup();
      ws = undefined;
    }
  });
});

describe("extractTarInWorker and chunks larger than its in-flight bound", () => {
  // A range may be any size (DSFETCH_RANGE_SIZE up to 5Gi) and arrives whole in shared memory.
  // The thread must acknowledge a chunk before it waits for the next one, and the sender must
  // always let two chunks be in flight: a plain .tar in 12 or 20 MiB ranges hung (review).
  // One 30 MiB archive for both (only read).
  let made: { data: Buffer; archive: Buffer } | undefined;
  function big(): { data: Buffer; archive: Buffer } {
    if (made === undefined) {
      const data = randomBytes(30 * 1024 * 1024);
      made = { data, archive: tar(file("big.bin", data), file("small.txt", Buffer.from("after"))) };
    }
    return made;
  }
  for (const mib of [12, 20]) {
    it(`a plain tar in shared chunks of ${mib} MiB is extracted, not left waiting`, async () => {
      ws = workspace();
      const { data, archive } = big();
      const size = mib * 1024 * 1024;
      async function* source() {
        for (let at = 0; at < archive.length; at += size) {
          const n = Math.min(size, archive.length - at);
          const chunk = Buffer.from(new SharedArrayBuffer(n));
          archive.copy(chunk, 0, at, at + n);
          yield chunk;
        }
      }
      let taken = 0;
      const result = await extractTarInWorker(source(), job(ws.dest), {
        onTaken: (n) => {
          taken += n;
        },
      });
      expect([...result.files].map((f) => f.path).sort()).toEqual(["big.bin", "small.txt"]);
      expect(readFileSync(join(ws.dest, "big.bin")).equals(data)).toBe(true);
      expect(taken).toBe(archive.length);
    }, 20_000);
  }
});

describe("extractTarInWorker and memory", () => {
  // Regression: each read of the source raced a promise that lives until the end, and every
  // race left a reaction holding its chunk: a 545 MB .tar.gz stayed in memory whole
  // (nodejs/node#17469). Chunks handed over must be collectable while the stream goes on.
  it("does not keep the chunks it has passed on", async () => {
    ws = workspace();
    setFlagsFromString("--expose-gc");
    const collect = runInNewContext("gc") as () => void;
    const size = 1024 * 1024;
    const archive = tar(
      ...Array.from({ length: 40 }, (_, i) => file(`f${i}.bin`, randomBytes(size - 512))),
    );
    const early: WeakRef<Buffer>[] = [];
    let aliveEarly = -1;
    async function* source(): AsyncGenerator<Buffer> {
      for (let at = 0, n = 0; at < archive.length; at += size, n++) {
        if (n === 30) {
          // Two rounds: the first may only finalize what the worker thread gave back.
          collect();
          await new Promise((resolve) => setTimeout(resolve, 20));
          collect();
          aliveEarly = early.filter((ref) => ref.deref() !== undefined).length;
        }
        // A fresh buffer per chunk, like a download's ranges.
        const chunk = Buffer.from(archive.subarray(at, at + size));
        if (n < 20) early.push(new WeakRef(chunk));
        yield chunk;
      }
    }
    const result = await extractTarInWorker(source(), job(ws.dest));
    expect(result.files.length).toBe(40);
    expect(early.length).toBe(20);
    // Of the first 20 chunks, none may still be held ten chunks later.
    expect(aliveEarly).toBe(0);
  });
});
