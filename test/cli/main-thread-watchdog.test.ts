// The main-thread watchdog (cli/main-thread-watchdog.ts): a main thread stuck in a system call
// (here: opening a FIFO for writing, which waits for a reader, as a write on a dead NFS mount
// waits for its server) can run nothing, not even a SIGTERM handler; the watchdog says so and
// ends the process. A main thread that works, waits or was paused is left alone.
import { execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, CLI_ENTRY, runCli } from "../harness/cli.ts";
import { jobArgs } from "../harness/cli-process.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

const scratch = mkdtempSync(join(tmpdir(), "dsfetch-main-watchdog-"));
const watchdogModule = fileURLToPath(
  new URL("../../src/cli/main-thread-watchdog.ts", import.meta.url),
);
let bucket: string;
const beatModule = fileURLToPath(new URL("../../src/util/main-thread-beat.ts", import.meta.url));

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

interface Ended {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs `body` after starting the watchdog with `boundMs`; `during` acts on the process. */
function runScript(
  name: string,
  body: string,
  options: {
    boundMs: number;
    json?: boolean;
    during?: (pid: number, stdout: () => string) => Promise<void>;
    env?: Record<string, string>;
    /** Where the child's stdout goes (default: a pipe read by the test). */
    stdoutFd?: number;
  },
): Promise<Ended> {
  const script = join(scratch, `${name}.ts`);
  writeFileSync(
    script,
    `import { startMainThreadWatchdog } from ${JSON.stringify(watchdogModule)};
     import { mainThreadAlive } from ${JSON.stringify(beatModule)};
     void mainThreadAlive;
     const watchdog = startMainThreadWatchdog({ boundMs: ${options.boundMs}, json: ${options.json === true} });
     void watchdog;
     ${body}`,
  );
  const started = performance.now();
  const child = spawn(process.execPath, [script], {
    stdio: ["ignore", options.stdoutFd ?? "pipe", "pipe"],
    env: { ...process.env, ...options.env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  void options.during?.(child.pid as number, () => stdout);
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, seconds: (performance.now() - started) / 1000 });
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * NODE_OPTIONS that run `body` first in the main thread ("main") or in every other thread
 * ("others") of a process, with `fs`, `childProcess` and `block(ms)` (this thread waits, as in
 * a call on hung storage; no ms: for good) at hand; `syncBuiltinESMExports()` after patching
 * a builtin makes the modules' named imports see the patch.
 */
function preload(threads: "main" | "others", body: string): string {
  return `--import=data:text/javascript,${encodeURIComponent(
    `import { isMainThread, workerData } from "node:worker_threads";
     import { syncBuiltinESMExports } from "node:module";
     import fs from "node:fs";
     import childProcess from "node:child_process";
     const block = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
     if (${threads === "main" ? "isMainThread" : "!isMainThread"}) {
       ${body}
     }`,
  )}`;
}

/** Blocks the main thread in open(2) for good: a FIFO opened for writing with no reader. */
function blockingOpen(name: string): string {
  const fifo = join(scratch, `${name}.fifo`);
  execFileSync("mkfifo", [fifo]);
  return `import { openSync } from "node:fs";
          setTimeout(() => openSync(${JSON.stringify(fifo)}, "w"), 200);
          setInterval(() => {}, 1000);`;
}

// Concurrent (vitest's maxConcurrency, 5 at a time): each test is its own process that mostly
// waits out a bound, with files of its own; one after another they took ~40 s.
describe.concurrent("the main-thread watchdog", () => {
  it("a main thread stuck in a system call: the error on stderr, exit by SIGKILL after the bound", async () => {
    const ended = await runScript("stuck", blockingOpen("stuck"), {
      boundMs: 1000,
    });
    expect(ended.signal).toBe("SIGKILL");
    expect(ended.stderr).toBe(
      "dsfetch: error: dsfetch's main thread has not run for 1 s: it is stuck in a system call (shared storage or a file that stopped answering) or in a loop. dsfetch ends itself with SIGKILL: exit status 137 [STALLED]\n" +
        "  hint: nothing half-written was published; the lock goes stale and a later run cleans up what this one left. Check the storage (mount, server); DSFETCH_MAIN_THREAD_TIMEOUT (now 1 s) is this bound\n",
    );
    expect(ended.stdout).toBe("");
    // 1 s, not the 30 s at which the test itself would kill it.
    expect(ended.seconds).toBeLessThan(15);
  }, 40_000);

  it("with --json, the error also goes to stdout as JSON", async () => {
    const ended = await runScript("stuck-json", blockingOpen("stuck-json"), {
      boundMs: 1000,
      json: true,
    });
    expect(ended.signal).toBe("SIGKILL");
    const answer = JSON.parse(ended.stdout) as { error: { code: string; message: string } };
    expect(answer.error.code).toBe("STALLED");
    expect(answer.error.message).toMatch(/^dsfetch's main thread has not run for 1 s/);
  }, 40_000);

  it("its words are written even when every thread of the pool is stuck too", async () => {
    const fifos = ["pool-a", "pool-b"].map((name) => {
      const fifo = join(scratch, `${name}.fifo`);
      execFileSync("mkfifo", [fifo]);
      return fifo;
    });
    const ended = await runScript(
      "pool",
      `import { open } from "node:fs";
       ${JSON.stringify(fifos)}.forEach((fifo) => open(fifo, "r", () => {}));
       ${blockingOpen("pool-main")}`,
      { boundMs: 1000, json: true, env: { UV_THREADPOOL_SIZE: "2" } },
    );
    expect(ended.signal).toBe("SIGKILL");
    expect(JSON.parse(ended.stdout)).toMatchObject({ error: { code: "STALLED" } });
    expect(ended.stderr).toMatch(/^dsfetch: error: dsfetch's main thread has not run for 1 s/);
  }, 40_000);

  it("a full pipe on stdout does not keep its words from stderr, nor the kill", async () => {
    // stdout: a pipe the test holds open, fills and never reads.
    const fifo = join(scratch, "unread.fifo");
    execFileSync("mkfifo", [fifo]);
    const filler = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const unread = openSync(fifo, constants.O_RDWR);
    try {
      const chunk = Buffer.alloc(4096, 120);
      for (;;) {
        try {
          writeSync(filler, chunk);
        } catch {
          break; // EAGAIN: full
        }
      }
      const ended = await runScript("unread", blockingOpen("unread-main"), {
        boundMs: 1000,
        json: true,
        stdoutFd: unread,
      });
      expect(ended.signal).toBe("SIGKILL");
      expect(ended.stderr).toMatch(/^dsfetch: error: dsfetch's main thread has not run for 1 s/);
      expect(ended.seconds).toBeLessThan(15);
    } finally {
      closeSync(unread);
      closeSync(filler);
    }
  }, 40_000);

  it("its kill comes even when its own writes block for good (stderr on the hung storage)", async () => {
    // Every thread but the main one: writeSync never returns (as a write to a file on a dead
    // mount); the watchdog thread blocks in it, and the kill must come from elsewhere.
    const blockingWrites = preload(
      "others",
      `fs.writeSync = () => block();
       syncBuiltinESMExports();`,
    );
    const ended = await runScript("writes-block", blockingOpen("writes-block"), {
      boundMs: 1000,
      json: true,
      env: { NODE_OPTIONS: blockingWrites },
    });
    expect(ended.signal).toBe("SIGKILL");
    expect(ended.stdout).toBe("");
    // 1 s, then the 2 s the writes are given: not the 30 s at which the test kills it.
    expect(ended.seconds).toBeLessThan(15);
  }, 40_000);

  it("a main thread in a long synchronous loop that says it is alive is not stopped", async () => {
    const ended = await runScript(
      "busy",
      `const until = performance.now() + 2500;
       const cell = new Int32Array(new SharedArrayBuffer(4));
       while (performance.now() < until) { Atomics.wait(cell, 0, 0, 20); mainThreadAlive(); }
       console.log("done");`,
      { boundMs: 1000 },
    );
    expect(ended).toMatchObject({ code: 0, signal: null, stdout: "done\n", stderr: "" });
  }, 40_000);

  it("a main thread that waits (timers, I/O) is not stopped", async () => {
    const ended = await runScript(
      "idle",
      `await new Promise((resolve) => setTimeout(resolve, 2000)); console.log("done");`,
      { boundMs: 500 },
    );
    expect(ended).toMatchObject({ code: 0, signal: null, stdout: "done\n", stderr: "" });
  }, 40_000);

  it("a process paused (SIGSTOP) for longer than the bound is not stopped when it goes on", async () => {
    const ended = await runScript(
      "paused",
      `const alive = setInterval(() => {}, 1000);
       await watchdog.running;
       clearInterval(alive);
       console.log("watched");
       await new Promise((resolve) => setTimeout(resolve, 4000));
       console.log("done");`,
      {
        boundMs: 1000,
        during: async (pid, stdout) => {
          // Paused once the watching thread runs (else it would test nothing).
          while (!stdout().includes("watched")) await sleep(20);
          await sleep(300);
          process.kill(pid, "SIGSTOP");
          await sleep(3000);
          process.kill(pid, "SIGCONT");
        },
      },
    );
    expect(ended).toMatchObject({
      code: 0,
      signal: null,
      stdout: "watched\ndone\n",
      stderr: "",
    });
  }, 40_000);

  it("once stopped, it stops nothing", async () => {
    const ended = await runScript(
      "stopped",
      `watchdog.stop();
       Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
       console.log("done");`,
      { boundMs: 500 },
    );
    expect(ended).toMatchObject({ code: 0, signal: null, stdout: "done\n", stderr: "" });
  }, 40_000);
});

describe.concurrent("the dsfetch command", () => {
  /**
   * A preload that makes the main thread's synchronous mkdir of `dir` (a folder dataset's
   * subdirectory) block for `ms`, as a call on hung storage would.
   */
  const blockingMkdir = (dir: string, ms: string) =>
    preload(
      "main",
      `const mkdirSync = fs.mkdirSync;
       fs.mkdirSync = (path, ...rest) => {
         if (String(path).endsWith(${JSON.stringify(dir)})) block(${ms});
         return mkdirSync(path, ...rest);
       };
       syncBuiltinESMExports();`,
    );

  beforeAll(async () => {
    bucket = await createBucket("main-watchdog");
    await putObject(bucket, "folder/top.txt", "top\n");
    await putObject(bucket, "folder/hangs-here/a.txt", "a\n");
  });

  const fetchArgs = (storage: string) => {
    mkdirSync(join(scratch, storage), { recursive: true });
    return ["fetch", "--datasets", "-", "--storage-root", join(scratch, storage), "--team", "ml"];
  };

  /** `dsfetch fetch` of the folder whose subdirectory's mkdir blocks for good (bound: 1 s). */
  const fetchStuckFolder = (storage: string, flags: readonly string[]) =>
    runCli([...fetchArgs(storage), ...flags], {
      stdin: JSON.stringify([{ uri: `s3://${bucket}/folder/` }]),
      env: {
        ...testEnv(),
        DSFETCH_MAIN_THREAD_TIMEOUT: "1",
        NODE_OPTIONS: blockingMkdir("/hangs-here", "Infinity"),
      },
      timeoutMs: 40_000,
    });

  it("a folder's fetch is watched, with DSFETCH_MAIN_THREAD_TIMEOUT as the bound", async () => {
    const started = performance.now();
    const result = await fetchStuckFolder("stuck", ["--json"]);
    expect(result.signal).toBe("SIGKILL");
    expect(result.stderr).toMatch(
      /dsfetch: error: dsfetch's main thread has not run for 1 s: it is stuck in a system call/,
    );
    expect(JSON.parse(result.stdout)).toMatchObject({ error: { code: "STALLED" } });
    expect((performance.now() - started) / 1000).toBeLessThan(30);
    // Nothing was published.
    expect(readdirSync(join(scratch, "stuck", "ml", "data"))).toEqual([".dsfetch"]);
  }, 60_000);

  it("`--no-json` after `--json`: the watchdog's answer is for people only, as main()'s", async () => {
    const result = await fetchStuckFolder("stuck-no-json", ["--json", "--no-json"]);
    expect(result.signal).toBe("SIGKILL");
    expect(result.stderr).toMatch(/dsfetch's main thread has not run for 1 s/);
    expect(result.stdout).toBe("");
  }, 60_000);

  it("`run --json`: the watchdog's answer goes to stderr only (stdout is the command's)", async () => {
    // Review, 2026-12-06: README says `run` prints nothing on stdout, --json or not.
    const storage = join(scratch, "stuck-run");
    mkdirSync(storage, { recursive: true });
    const result = await runCli(["run", "--json", ...jobArgs(storage, ["true"]).slice(1)], {
      stdin: JSON.stringify([{ uri: `s3://${bucket}/folder/` }]),
      env: {
        ...testEnv(),
        DSFETCH_MAIN_THREAD_TIMEOUT: "1",
        NODE_OPTIONS: blockingMkdir("/hangs-here", "Infinity"),
      },
      timeoutMs: 40_000,
    });
    expect(result.signal).toBe("SIGKILL");
    expect(result.stderr).toMatch(/dsfetch's main thread has not run for 1 s/);
    expect(result.stdout).toBe("");
  }, 60_000);

  it("an archive's tree is watched while it is made read-only before publishing", async () => {
    const tree = join(scratch, "tree");
    mkdirSync(join(tree, "sub"), { recursive: true });
    writeFileSync(join(tree, "top.txt"), "top\n");
    writeFileSync(join(tree, "sub", "x.txt"), "x\n");
    const archive = join(scratch, "tree.tar");
    execFileSync("tar", ["-cf", archive, "-C", tree, "."]);
    await putObject(bucket, "tree.tar", readFileSync(archive));
    // The walk reads each directory with opendirSync (permissions.ts).
    const blockingReaddir = preload(
      "main",
      `const opendirSync = fs.opendirSync;
       fs.opendirSync = (path, ...rest) => {
         if (String(path).endsWith("/sub")) block();
         return opendirSync(path, ...rest);
       };
       syncBuiltinESMExports();`,
    );
    const result = await runCli(fetchArgs("archive"), {
      stdin: JSON.stringify([{ uri: `s3://${bucket}/tree.tar` }]),
      env: { ...testEnv(), DSFETCH_MAIN_THREAD_TIMEOUT: "1", NODE_OPTIONS: blockingReaddir },
      timeoutMs: 40_000,
    });
    expect(result.signal).toBe("SIGKILL");
    expect(result.stderr).toMatch(/dsfetch's main thread has not run for 1 s/);
    expect(readdirSync(join(scratch, "archive", "ml", "data"))).toEqual([".dsfetch"]);
  }, 60_000);

  it("a folder's fetch whose main thread was slow, not stuck, is staged", async () => {
    const result = await runCli(fetchArgs("slow"), {
      stdin: JSON.stringify([{ uri: `s3://${bucket}/folder/` }]),
      env: {
        ...testEnv(),
        DSFETCH_MAIN_THREAD_TIMEOUT: "3",
        NODE_OPTIONS: blockingMkdir("/hangs-here", "1000"),
      },
      timeoutMs: 40_000,
    });
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(
      readFileSync(join(scratch, "slow", "ml", "data", "folder", "hangs-here", "a.txt"), "utf8"),
    ).toBe("a\n");
  }, 60_000);

  it("a single object's fetch starts no watchdog thread (a thread is not free)", async () => {
    await putObject(bucket, "one.txt", "one\n");
    const result = await runCli(fetchArgs("one"), {
      stdin: JSON.stringify([{ uri: `s3://${bucket}/one.txt` }]),
      env: {
        ...testEnv(),
        NODE_OPTIONS: preload(
          "others",
          `if (workerData?.boundMs !== undefined) process.stderr.write("a watchdog started\\n");`,
        ),
      },
    });
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.stderr).not.toMatch(/a watchdog started/);
  }, 60_000);

  it("`run` stops watching once the command runs: a stuck dsfetch must not end the training", async () => {
    const storage = join(scratch, "storage");
    mkdirSync(storage);
    // Once the command is spawned, dsfetch's main thread is blocked for 4 s (its bound: 2 s;
    // not 1 s: staging itself, on a loaded machine, must not come near it).
    const blockAfterSpawn = preload(
      "main",
      `const spawn = childProcess.spawn;
       childProcess.spawn = (...args) => {
         const child = spawn(...args);
         if (JSON.stringify(args).includes("the-training")) setTimeout(() => block(4000), 100);
         return child;
       };
       syncBuiltinESMExports();`,
    );
    const result = await runCli(
      [
        "run",
        "--datasets",
        "-",
        "--storage-root",
        storage,
        "--team",
        "ml",
        "--mount-root",
        join(scratch, "mnt"),
        "--",
        "sh",
        "-c",
        "sleep 6; echo the-training finished",
      ],
      {
        // A folder: the watchdog runs while it is staged.
        stdin: JSON.stringify([{ uri: `s3://${bucket}/folder/` }]),
        env: { ...testEnv(), DSFETCH_MAIN_THREAD_TIMEOUT: "2", NODE_OPTIONS: blockAfterSpawn },
        timeoutMs: 40_000,
      },
    );
    expect(result.stderr).not.toMatch(/main thread has not run/);
    expect(result).toMatchObject({ code: 0, signal: null, stdout: "the-training finished\n" });
  }, 60_000);

  it("`sidecar` stops watching once staged: a stuck dsfetch must not drop the job's leases", async () => {
    const storage = join(scratch, "sidecar-storage");
    mkdirSync(storage);
    const readyFile = join(scratch, "sidecar-ready");
    // Once ready, dsfetch's main thread is blocked for 4 s (its bound: 2 s).
    const blockWhenReady = preload(
      "main",
      `const write = process.stderr.write.bind(process.stderr);
       process.stderr.write = (chunk, ...rest) => {
         const done = write(chunk, ...rest);
         if (String(chunk).includes("sidecar: ready")) setTimeout(() => block(4000), 100);
         return done;
       };`,
    );
    const child = spawn(
      process.execPath,
      [
        CLI_ENTRY,
        "sidecar",
        "--datasets",
        "-",
        "--storage-root",
        storage,
        "--team",
        "ml",
        "--mount-root",
        join(scratch, "sidecar-mnt"),
        "--ready-file",
        readyFile,
        "--listen",
        "127.0.0.1:0",
      ],
      {
        env: baseEnv({
          ...testEnv(),
          DSFETCH_MAIN_THREAD_TIMEOUT: "2",
          NODE_OPTIONS: blockWhenReady,
        }),
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.stdin.end(JSON.stringify([{ uri: `s3://${bucket}/folder/` }]));
    const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.on("close", (code, signal) => resolve({ code, signal })),
    );
    const deadline = Date.now() + 30_000;
    while (!stderr.includes("sidecar: ready") && Date.now() < deadline) await sleep(50);
    // Past the block and the bound.
    await sleep(5_000);
    child.kill("SIGTERM");
    const ended = await exit;
    expect(stderr).not.toMatch(/main thread has not run/);
    expect(ended).toEqual({ code: 0, signal: null });
  }, 60_000);
});
