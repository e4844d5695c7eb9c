// The extraction thread's stall watchdog: a decompressor that stops, or a thread stuck in a
// system call, fails the extraction with STALLED after the bound instead of hanging it (and
// the other workers waiting on its lock) forever; a decompressor that is slow but steady is
// never failed. Stand-in programs on PATH play the decompressor.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { type ExtractJob, extractTarInWorker } from "../../src/archive/extract-in-worker.ts";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";
import { DsfetchError } from "../../src/errors.ts";
import { chunks, file, tar, type Workspace, workspace } from "./tar-helpers.ts";

let ws: Workspace | undefined;
const savedPath = process.env.PATH;
afterEach(() => {
  process.env.PATH = savedPath;
  ws?.cleanup();
  ws = undefined;
});

function xzJob(destination: string): ExtractJob {
  return { compression: "xz", destination, limits: DEFAULT_LIMITS, dataset: "ds" };
}

/**
 * Puts a stand-in `xz` first on PATH (the extraction thread copies the environment when it
 * starts, inside extractTarInWorker). It writes its pid to `<bin>/xz.pid`.
 */
function standInXz(root: string, body: string): { pidFile: string } {
  const bin = join(root, "bin");
  execFileSync("mkdir", ["-p", bin]);
  const pidFile = join(bin, "xz.pid");
  writeFileSync(join(bin, "xz"), `#!/bin/sh\necho $$ > '${pidFile}'\n${body}\n`);
  chmodSync(join(bin, "xz"), 0o755);
  process.env.PATH = `${bin}:${savedPath ?? "/usr/bin:/bin"}`;
  return { pidFile };
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
    const { pidFile } = standInXz(ws.root, "cat > /dev/null\nexec sleep 600");
    const started = performance.now();
    const error = await extractTarInWorker(chunks(randomBytes(300_000), 65536), xzJob(ws.dest), {
      stallTimeoutMs: 500,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error).toMatchObject({ code: "STALLED", dataset: "ds", exitCode: 10 });
    expect((error as DsfetchError).message).toBe(
      "ds: the extraction made no progress for 0.5 s (it took no input and wrote nothing; it had every byte of the archive and had not finished)",
    );
    expect((error as DsfetchError).hint).toMatch(
      /^nothing was published; the xz decompressor stopped, or the storage .*: check it and run again \(DSFETCH_EXTRACT_STALL_TIMEOUT raises the bound/,
    );
    expect(performance.now() - started).toBeLessThan(20_000);
    const pid = Number(readFileSync(pidFile, "utf8"));
    await expect.poll(() => running(pid), { timeout: 5000 }).toBe(false);
  });

  it("a decompressor that stops reading: STALLED naming the bytes still waiting", async () => {
    ws = workspace();
    // Never reads its input: the pipe fills, then the thread's input, then the sender's bound.
    const { pidFile } = standInXz(ws.root, "exec sleep 600");
    const error = await extractTarInWorker(chunks(randomBytes(48 << 20), 1 << 20), xzJob(ws.dest), {
      stallTimeoutMs: 500,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "STALLED" });
    expect((error as DsfetchError).message).toMatch(
      /^ds: the extraction made no progress for 0\.5 s \(it took no input and wrote nothing; \d+ bytes of the archive were waiting for it\)$/,
    );
    const pid = Number(readFileSync(pidFile, "utf8"));
    await expect.poll(() => running(pid), { timeout: 5000 }).toBe(false);
  });

  it("a decompressor that is slow but keeps writing is not failed, whatever the total time", async () => {
    ws = workspace();
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 6; i++) files.set(`f${i}.bin`, randomBytes(100_000));
    const archive = tar(...[...files].map(([name, data]) => file(name, data)));
    const tarFile = join(ws.root, "real.tar");
    writeFileSync(tarFile, archive);
    // Takes its input at once, then writes the tar in 64 KiB pieces 0.25 s apart: ~2.5 s
    // in all, five times the bound, with no input taken after the first instant.
    standInXz(
      ws.root,
      [
        "cat > /dev/null",
        `n=$(wc -c < '${tarFile}')`,
        "i=0",
        "while [ $((i * 65536)) -lt $n ]; do",
        `  dd if='${tarFile}' bs=65536 skip=$i count=1 2>/dev/null`,
        "  sleep 0.25",
        "  i=$((i + 1))",
        "done",
      ].join("\n"),
    );
    const result = await extractTarInWorker(chunks(randomBytes(1000), 1000), xzJob(ws.dest), {
      stallTimeoutMs: 500,
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
    const fifo = join(ws.root, "fifo");
    execFileSync("mkfifo", [fifo]);
    const worker = new Worker(
      `require("node:worker_threads").parentPort.postMessage("blocking");
       require("node:fs").openSync(${JSON.stringify(fifo)}, "r");`,
      { eval: true },
    );
    await new Promise((resolve) => worker.once("message", resolve));
    let release: (() => void) | undefined;
    async function* oneChunkThenSilence(): AsyncGenerator<Buffer> {
      yield randomBytes(1 << 20);
      await new Promise<void>((resolve) => {
        release = resolve;
      });
    }
    const exited = new Promise((resolve) => worker.once("exit", resolve));
    try {
      const error = await extractTarInWorker(oneChunkThenSilence(), xzJob(ws.dest), {
        thread: { worker },
        stallTimeoutMs: 300,
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "STALLED" });
      expect((error as DsfetchError).message).toMatch(
        /1048576 bytes of the archive were waiting for it\)$/,
      );
    } finally {
      release?.();
      // Let the thread's open() return, so that it ends.
      closeSync(openSync(fifo, "w"));
      await exited;
    }
    expect(existsSync(fifo)).toBe(true);
  });
});
