// program-output.ts: a child's stdout read into reused batches through a Unix socket pair
// (decompress.ts reads `xz -dc`, `lbzip2 -dc` this way). Children here are small Node
// programs whose output is known byte for byte.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { OUTPUT_BATCH, openProgramOutput } from "../../src/archive/program-output.ts";
import { runInOwnProcessGroup } from "../harness/own-process-group.ts";

const scratch = mkdtempSync(join(tmpdir(), "dsfetch-program-output-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const linux = process.platform === "linux";

/** Runs `script` with its stdout on `output`'s child end. */
function run(script: string, childEnd: Socket): ChildProcess {
  return spawn(process.execPath, ["-e", script], { stdio: ["ignore", childEnd, "inherit"] });
}

/** `total` bytes: little-endian uint32 counters (so a byte out of place shows). */
function counters(total: number): Buffer {
  const words = new Uint32Array(total / 4);
  for (let i = 0; i < words.length; i++) words[i] = i;
  return Buffer.from(words.buffer);
}

/** Call right after spawning: a child that already exited never says so again. */
function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

describe.runIf(linux)("program output (Linux: a Unix socket pair, read with onread)", () => {
  it("arrives whole and in order, in batches of at most 1 MiB, to a consumer slower than the program", async () => {
    const total = 8 << 20;
    const output = await openProgramOutput();
    if (output === undefined) throw new Error("openProgramOutput() gave no socket pair on Linux");
    // 8 KiB writes, as xz makes them.
    const child = run(
      `const total = ${total}; const w = new Uint32Array(total / 4); for (let i = 0; i < w.length; i++) w[i] = i;
       const b = Buffer.from(w.buffer); let at = 0;
       const next = () => { while (at < total) { const ok = process.stdout.write(b.subarray(at, at + 8192)); at += 8192; if (!ok) { process.stdout.once("drain", next); return; } } };
       next();`,
      output.childEnd,
    );
    const ended = exited(child);
    output.childStarted();
    const copies: Buffer[] = [];
    for await (const chunk of output) {
      expect(chunk.length).toBeLessThanOrEqual(OUTPUT_BATCH);
      // Copied, as decompress()'s callers must: the memory is reused for later bytes.
      copies.push(Buffer.from(chunk));
      // Slower than the writer: every batch fills, the socket pauses and resumes.
      await sleep(15);
    }
    expect(await ended).toEqual({ code: 0, signal: null });
    expect(Buffer.concat(copies).equals(counters(total))).toBe(true);
    // Batches, not the 8 KiB writes nor 64 KiB reads (≥ 128 for 8 MiB): ~9 batches of ≥ 960
    // KiB on an idle machine; more where a busy CPU slows the writer (flushes on a timer).
    expect(copies.length).toBeLessThan(64);
  });

  it("a chunk stays intact until the next is asked for, however long the consumer holds it", async () => {
    const total = 6 << 20;
    const output = await openProgramOutput();
    if (output === undefined) throw new Error("openProgramOutput() gave no socket pair on Linux");
    const child = run(
      `const w = new Uint32Array(${total} / 4); for (let i = 0; i < w.length; i++) w[i] = i;
       const b = Buffer.from(w.buffer); let at = 0;
       const next = () => { while (at < b.length) { const n = 1 + Math.floor(Math.random() * 100000);
         const ok = process.stdout.write(b.subarray(at, at + n)); at += n; if (!ok) { process.stdout.once("drain", next); return; } } };
       next();`,
      output.childEnd,
    );
    const ended = exited(child);
    output.childStarted();
    const expected = counters(total);
    let at = 0;
    for await (const chunk of output) {
      // Checked only after the program had time to write far more than the batches hold:
      // memory given back too early would hold later bytes by now.
      await sleep(20);
      expect(chunk.equals(expected.subarray(at, at + chunk.length))).toBe(true);
      at += chunk.length;
    }
    expect(at).toBe(total);
    expect(await ended).toEqual({ code: 0, signal: null });
  });

  it("hands on a partial batch while the consumer waits, not only when 1 MiB is there", async () => {
    const output = await openProgramOutput();
    if (output === undefined) throw new Error("openProgramOutput() gave no socket pair on Linux");
    const child = run(
      `process.stdout.write("first"); setTimeout(() => process.stdout.write("second"), 3000);`,
      output.childEnd,
    );
    const ended = exited(child);
    output.childStarted();
    const seen: string[] = [];
    for await (const chunk of output) seen.push(chunk.toString());
    await ended;
    // Held until the next bytes or the end, the two would have come as one "firstsecond".
    expect(seen).toEqual(["first", "second"]);
  });

  it("ends with nothing for a program that writes nothing", async () => {
    const output = await openProgramOutput();
    if (output === undefined) throw new Error("openProgramOutput() gave no socket pair on Linux");
    const child = run(`process.exit(0)`, output.childEnd);
    const ended = exited(child);
    output.childStarted();
    const seen: Buffer[] = [];
    for await (const chunk of output) seen.push(Buffer.from(chunk));
    expect(await ended).toEqual({ code: 0, signal: null });
    expect(seen).toEqual([]);
  });

  it("stopping early closes our end: the program's next write fails and it ends", async () => {
    const output = await openProgramOutput();
    if (output === undefined) throw new Error("openProgramOutput() gave no socket pair on Linux");
    // Writes forever; its first write after our end closed fails (EPIPE or ECONNRESET: unread
    // bytes reset the peer) and it ends, as xz would.
    const child = spawn("yes", ["dsfetch"], { stdio: ["ignore", output.childEnd, "inherit"] });
    output.childStarted();
    const ended = exited(child);
    for await (const chunk of output) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    // Killed by SIGPIPE, or (SIGPIPE ignored, as a parent may leave it) exit 1 on the error.
    const result = await ended;
    expect(result.signal === "SIGPIPE" || result.code === 1).toBe(true);
  });

  it("out of file descriptors: decompress() fails promptly with STORAGE naming the limit (no wait for a connection that never comes), and signals nothing else", async () => {
    const script = join(scratch, "emfile.ts");
    writeFileSync(
      script,
      `import { closeSync, openSync } from "node:fs";
       import { decompress } from ${JSON.stringify(fileURLToPath(new URL("../../src/archive/decompress.ts", import.meta.url)))};
       async function* source() { yield Buffer.from("not xz"); }
       const fds = [];
       try { for (;;) fds.push(openSync("/dev/null", "r")); } catch {}
       // One left: enough to listen, not to connect, accept and make the child's pipes.
       closeSync(fds.pop());
       try { for await (const _ of decompress("xz", source())) {} console.log("ended"); }
       catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message, hint: error.hint })); }
       process.exit(0);`,
    );
    // In a process group of its own: where the program's pipes could not be made, the spawn
    // failed, and child.kill() there signalled the whole group (kill(0)): 3 runs in 5 killed
    // the CI run itself on 2026-12-05 (util/kill-child.ts).
    const started = performance.now();
    const run = await runInOwnProcessGroup(script, { runs: 5, timeoutMs: 30_000 });
    expect(run).toMatchObject({ code: 0, signal: null, groupAlive: true });
    expect(run.lines).toHaveLength(5);
    expect(performance.now() - started).toBeLessThan(25_000);
    for (const line of run.lines) {
      expect(JSON.parse(line)).toMatchObject({
        code: "STORAGE",
        message: expect.stringContaining("out of file descriptors"),
        hint: expect.stringContaining("ulimit -n"),
      });
    }
  });

  it("refuses a stranger who connected first: no socket pair (the caller reads a plain pipe), and the stranger gets nothing", async () => {
    let stranger: Socket | undefined;
    const strangerGot: Buffer[] = [];
    const output = await openProgramOutput({
      beforeConnect: async (name) => {
        stranger = connect({ path: name });
        stranger.on("data", (chunk) => strangerGot.push(chunk));
        stranger.on("error", () => {});
        await new Promise<void>((resolve) => stranger?.once("connect", () => resolve()));
        stranger.write("not the token, but sixteen bytes!");
        // Let its connection be the first one accepted.
        await sleep(50);
      },
    });
    expect(output).toBeUndefined();
    await new Promise<void>((resolve) => {
      if (stranger?.destroyed) resolve();
      else stranger?.once("close", () => resolve());
    });
    expect(Buffer.concat(strangerGot).length).toBe(0);
  });
});
