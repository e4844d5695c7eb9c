// The extraction thread's stall watchdog: a decompressor that stops, or a thread stuck in a
// system call, fails the extraction with STALLED after the bound instead of hanging it (and
// the other workers waiting on its lock) forever; a decompressor that is slow but steady is
// never failed. Stand-in programs on PATH play the decompressor.

import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { type AddressInfo, connect, createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { type ExtractJob, extractTarInWorker } from "../../src/archive/extract-in-worker.ts";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";
import { TarExtractor } from "../../src/archive/tar-extract.ts";
import { DsfetchError } from "../../src/errors.ts";
import { stuckThreads } from "../../src/util/stuck-threads.ts";
import { standInXzScript } from "../harness/stand-in-xz.ts";
import { chunks, dir, file, symlink, tar, type Workspace, workspace } from "./tar-helpers.ts";

let ws: Workspace | undefined;
const savedPath = process.env.PATH;
afterEach(() => {
  process.env.PATH = savedPath;
  delete process.env.DSFETCH_STAND_IN;
  ws?.cleanup();
  ws = undefined;
});

function xzJob(destination: string): ExtractJob {
  return { compression: "xz", destination, limits: DEFAULT_LIMITS, dataset: "ds" };
}

function plainJob(destination: string): ExtractJob {
  return { compression: "none", destination, limits: DEFAULT_LIMITS, dataset: "ds" };
}

/** Extracts in a process of its own, for the test that stops and resumes it. */
const FREEZE_CHILD = fileURLToPath(new URL("./stall-freeze-child.ts", import.meta.url));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Keeps this thread busy for `ms` inside a socket's "data" callback; resolves after it. */
async function busySocketCallback(ms: number): Promise<void> {
  const server = createServer((socket) => socket.end("x"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve, reject) => {
    const client = connect(port, "127.0.0.1");
    client.on("error", reject);
    client.once("data", () => {
      const until = performance.now() + ms;
      while (performance.now() < until);
      client.destroy();
      resolve();
    });
  });
  server.close();
}

/**
 * A thread that speaks the extraction thread's protocol and answers each message only after
 * `delayMs` (one "taken" per "bytes", "done" after "end"): slow to respond, never stalled
 * for longer than that.
 */
function slowThread(delayMs: number): { worker: Worker } {
  const worker = new Worker(
    `const { parentPort } = require("node:worker_threads");
     parentPort.on("message", (m) => {
       const later = (reply) => setTimeout(() => parentPort.postMessage(reply), ${delayMs});
       if (m.type === "bytes") later({ type: "taken", bytes: m.bytes.length });
       else if (m.type === "end") later({
          type: "done",
          result: { files: { paths: "", sizes: new Float64Array(0) }, bytes: 0, writtenInParallel: 0 },
        });
     });`,
    { eval: true },
  );
  return { worker };
}

/**
 * Puts a stand-in `xz` first on PATH (the extraction thread copies the environment when it
 * starts, inside extractTarInWorker). It writes its pid to `<bin>/xz.pid`.
 */
function standInXz(root: string, body: string): void {
  const bin = join(root, "bin");
  execFileSync("mkdir", ["-p", bin]);
  writeFileSync(join(bin, "xz"), standInXzScript(body));
  chmodSync(join(bin, "xz"), 0o755);
  process.env.PATH = `${bin}:${savedPath ?? "/usr/bin:/bin"}`;
  // Inherited by every program the extraction starts from now on, from its first instruction.
  process.env.DSFETCH_STAND_IN = root;
}

/**
 * The processes started since standInXz(root) that are still running, found by the marker
 * in their environment from their start. A pid file the script wrote was not enough: on a
 * loaded machine the stand-in was killed at the 1 s bound before its first line ran (ENOENT
 * in a full run, 2026-12-07).
 */
function standInsRunning(root: string): number[] {
  const marker = `DSFETCH_STAND_IN=${root}`;
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => {
      try {
        return (
          readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(marker) && running(pid)
        );
      } catch {
        return false;
      }
    });
}

/**
 * A stand-in `xz` that takes its input at once, then writes `tarFile` in 64 KiB pieces
 * `gapSeconds` apart: slow, but never silent for longer than the gap.
 */
function steadyStandInXz(
  root: string,
  tarFile: string,
  gapSeconds: number,
  pieceBytes = 65536,
): void {
  standInXz(
    root,
    [
      "cat > /dev/null",
      `n=$(wc -c < '${tarFile}')`,
      "i=0",
      `while [ $((i * ${pieceBytes})) -lt $n ]; do`,
      `  dd if='${tarFile}' bs=${pieceBytes} skip=$i count=1 2>/dev/null`,
      `  sleep ${gapSeconds}`,
      "  i=$((i + 1))",
      "done",
    ].join("\n"),
  );
}

/**
 * A thread blocked opening a FIFO for reading (until a writer opens it): it can neither take
 * input nor be terminated, as with a write to a hung NFS server. `unblock` lets it end.
 */
async function threadBlockedOnFifo(root: string): Promise<{
  fifo: string;
  worker: Worker;
  exited: Promise<unknown>;
  unblock: () => void;
}> {
  const fifo = join(root, "fifo");
  execFileSync("mkfifo", [fifo]);
  const worker = new Worker(
    `require("node:worker_threads").parentPort.postMessage("blocking");
     require("node:fs").openSync(${JSON.stringify(fifo)}, "r");`,
    { eval: true },
  );
  await new Promise((resolve) => worker.once("message", resolve));
  const exited = new Promise((resolve) => worker.once("exit", resolve));
  return { fifo, worker, exited, unblock: () => closeSync(openSync(fifo, "w")) };
}

/** Whether a process still runs (a zombie, dead but not yet reaped, does not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

describe("the extraction thread's stall watchdog", () => {
  it("a decompressor that takes the archive and then stops: STALLED, and the program is killed", async () => {
    ws = workspace();
    // Reads everything, then neither writes nor exits.
    standInXz(ws.root, "cat > /dev/null\nexec sleep 600");
    const started = performance.now();
    // 3 s, not 1: on a loaded machine the thread and the stand-in took more than 1 s to start
    // and take the bytes, and the watchdog then rightly said they were still waiting (CI).
    const error = await extractTarInWorker(chunks(randomBytes(300_000), 65536), xzJob(ws.dest), {
      stallTimeoutMs: 3000,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error).toMatchObject({ code: "STALLED", dataset: "ds", exitCode: 10 });
    expect((error as DsfetchError).message).toBe(
      "ds: the extraction made no progress for 3 s (it took no input and wrote nothing; it had every byte of the archive and had not finished)",
    );
    expect((error as DsfetchError).hint).toMatch(
      /^nothing was published; the xz decompressor stopped, or the storage .*: check it and run again \(DSFETCH_EXTRACT_STALL_TIMEOUT raises the bound/,
    );
    expect(performance.now() - started).toBeLessThan(20_000);
    const root = ws.root;
    await expect.poll(() => standInsRunning(root), { timeout: 5000 }).toEqual([]);
  });

  it("a decompressor that stops reading: STALLED naming the bytes still waiting", async () => {
    ws = workspace();
    // Never reads its input: the pipe fills, then the thread's input, then the sender's bound.
    standInXz(ws.root, "exec sleep 600");
    const error = await extractTarInWorker(chunks(randomBytes(48 << 20), 1 << 20), xzJob(ws.dest), {
      stallTimeoutMs: 1000,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "STALLED" });
    expect((error as DsfetchError).message).toMatch(
      /^ds: the extraction made no progress for 1 s \(it took no input and wrote nothing; \d+ bytes of the archive were waiting for it\)$/,
    );
    const root = ws.root;
    await expect.poll(() => standInsRunning(root), { timeout: 5000 }).toEqual([]);
  });

  it("a decompressor that is slow but keeps writing is not failed, whatever the total time", async () => {
    ws = workspace();
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 6; i++) files.set(`f${i}.bin`, randomBytes(100_000));
    const archive = tar(...[...files].map(([name, data]) => file(name, data)));
    const tarFile = join(ws.root, "real.tar");
    writeFileSync(tarFile, archive);
    // Takes its input at once, then writes the tar in 32 KiB pieces 0.2 s apart: ~3.8 s in
    // all, nearly twice the bound, with no input taken after the first instant. A bound ten
    // times the gap: with 1 s and 0.25 s gaps, a fork of `dd` on a loaded CI machine took
    // longer than the bound once (2026-12-06).
    steadyStandInXz(ws.root, tarFile, 0.2, 32768);
    const result = await extractTarInWorker(chunks(randomBytes(1000), 1000), xzJob(ws.dest), {
      stallTimeoutMs: 2000,
    });
    expect(result.files).toHaveLength(files.size);
    for (const [name, data] of files) {
      expect(readFileSync(join(ws.dest, name)).equals(data), name).toBe(true);
    }
  });

  it("a thread blocked in a system call: STALLED all the same, without waiting for it", async () => {
    ws = workspace();
    // Opening a FIFO for reading blocks until a writer opens it: the thread can neither take
    // input nor be terminated, as with a write to a hung NFS server.
    const { fifo, worker, exited, unblock } = await threadBlockedOnFifo(ws.root);
    let release: (() => void) | undefined;
    async function* oneChunkThenSilence(): AsyncGenerator<Buffer> {
      yield randomBytes(1 << 20);
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    }
    try {
      const error = await extractTarInWorker(oneChunkThenSilence(), xzJob(ws.dest), {
        thread: { worker },
        stallTimeoutMs: 1000,
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "STALLED" });
      expect((error as DsfetchError).message).toMatch(
        /1048576 bytes of the archive were waiting for it\)$/,
      );
      // Given up on, and noted: the CLI ends with SIGKILL rather than hang (cli/finish.ts).
      expect(stuckThreads().at(-1)).toBe(`the extraction thread of ds, writing under ${ws.dest}`);
    } finally {
      release?.();
      unblock();
      await exited;
    }
    expect(existsSync(fifo)).toBe(true);
  });

  it("a source idle for longer than the bound is not a stall: the clock starts when work is handed over", async () => {
    // The thread answers each message 600 ms late, with a bound of 1 s; the source is
    // silent for 1.5 s before its first chunk and again before its end. Counted from the
    // thread's last answer instead of from the hand-over, both would be stalls.
    async function* slowSource(): AsyncGenerator<Buffer> {
      await sleep(1500);
      yield Buffer.alloc(1024);
      await sleep(1500);
    }
    const result = await extractTarInWorker(slowSource(), plainJob("/nonexistent"), {
      thread: slowThread(600),
      stallTimeoutMs: 1000,
    });
    expect([...result.files]).toEqual([]);
    expect(result.bytes).toBe(0);
  });

  it("a process stopped for longer than the bound (Ctrl-Z, docker pause) is not stalled when it resumes", async () => {
    ws = workspace();
    const parts = [];
    for (let i = 0; i < 20; i++) parts.push(file(`f${i}.bin`, randomBytes(100_000)));
    const tarFile = join(ws.root, "real.tar");
    writeFileSync(tarFile, tar(...parts));
    // 64 KiB every 0.1 s: ~3 s in all, steady.
    steadyStandInXz(ws.root, tarFile, 0.1);
    // Its own process group: the stand-in and its sleeps stop and resume with it.
    const child = spawn(process.execPath, [FREEZE_CHILD, ws.dest, "1000"], {
      detached: true,
      env: process.env,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => {
      out += text;
    });
    const closed = new Promise((resolve) => child.once("close", resolve));
    await expect.poll(() => out, { timeout: 20_000 }).toContain("started");
    await sleep(500);
    const group = -(child.pid ?? 0);
    process.kill(group, "SIGSTOP");
    await sleep(2500);
    process.kill(group, "SIGCONT");
    await closed;
    expect(JSON.parse(out.split("\n")[1] ?? "")).toEqual({ files: 20 });
  }, 30_000);

  it("the tar writer reports progress for every entry, and for every link created after the last byte", () => {
    ws = workspace();
    // Entries without data (empty files, directories) and links: on a slow network
    // filesystem each costs a round trip, and the links are all created in end().
    const parts = [file("target.txt", "data")];
    for (let i = 0; i < 300; i++) parts.push(file(`empty/e${i}`));
    for (let i = 0; i < 200; i++) parts.push(dir(`dirs/d${i}`));
    for (let i = 0; i < 500; i++) parts.push(symlink(`links/l${i}`, "../target.txt"));
    let calls = 0;
    const extractor = new TarExtractor(ws.dest, DEFAULT_LIMITS, "ds", () => {
      calls += 1;
    });
    extractor.write(tar(...parts));
    expect(calls).toBeGreaterThanOrEqual(1 + 300 + 200 + 500);
    const beforeEnd = calls;
    extractor.end();
    // Each link is checked (resolved through the others), then created.
    expect(calls - beforeEnd).toBeGreaterThanOrEqual(2 * 500);
    expect(readFileSync(join(ws.dest, "links", "l499"), "utf8")).toBe("data");
  });

  it("this thread busy for longer than the bound while the extraction progresses: no stall", async () => {
    ws = workspace();
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 24; i++) files.set(`f${i}.bin`, randomBytes(1 << 20));
    const archive = tar(...[...files].map(([name, data]) => file(name, data)));
    async function* busyMidway(): AsyncGenerator<Buffer> {
      let n = 0;
      for await (const chunk of chunks(archive, 1 << 20)) {
        yield chunk;
        if (++n === 4) {
          // While the source waits, a socket's data callback (as the download's are) keeps
          // this thread busy for 2 s: the "taken" that arrive meanwhile are handled in
          // the event loop's next poll phase, after its timers, so the watchdog's next turn
          // sees 4 MiB not taken and the thread idle for 2 s (it took them at once).
          await busySocketCallback(2000);
          await sleep(300);
        }
      }
    }
    const result = await extractTarInWorker(busyMidway(), plainJob(ws.dest), {
      stallTimeoutMs: 1000,
    });
    expect(result.files).toHaveLength(files.size);
  });

  it("an abort while the thread is blocked in a system call: the abort's reason, after the grace", async () => {
    ws = workspace();
    const { worker, exited, unblock } = await threadBlockedOnFifo(ws.root);
    const controller = new AbortController();
    const reason = new Error("interrupted");
    async function* abortAfterOneChunk(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1024);
      controller.abort(reason);
      controller.signal.throwIfAborted();
    }
    try {
      // A bound far longer than the test: the answer must not wait for it.
      const error = await extractTarInWorker(abortAfterOneChunk(), plainJob(ws.dest), {
        thread: { worker },
        signal: controller.signal,
        stallTimeoutMs: 3_600_000,
      }).catch((e: unknown) => e);
      expect(error).toBe(reason);
    } finally {
      unblock();
      await exited;
    }
  }, 20_000);
});
