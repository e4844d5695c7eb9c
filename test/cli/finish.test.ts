// finish.ts: how the dsfetch process ends. A Node process cannot exit while a thread is stuck
// in a system call (here: a FIFO opened for reading, which waits for a writer, as a call on
// a dead NFS mount waits for its server); once dsfetch gave up on such a thread it replaces
// itself (execve) with a process that exits with its code, after saying why, instead of
// hanging after its answer; SIGKILL (137) where it cannot.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { unblockFifo } from "../harness/fifos.ts";

const scratch = mkdtempSync(join(tmpdir(), "dsfetch-finish-"));
const finishModule = fileURLToPath(new URL("../../src/cli/finish.ts", import.meta.url));
const stuckModule = fileURLToPath(new URL("../../src/util/stuck-threads.ts", import.meta.url));
const lockModule = fileURLToPath(new URL("../../src/volumes/lock.ts", import.meta.url));
const tuningModule = fileURLToPath(new URL("../../src/config/tuning.ts", import.meta.url));

const fifos: string[] = [];
afterEach(() => {
  // A hung test's Node (or the Node under a test's shell, which the test's kill does not
  // reach) ends then.
  for (const fifo of fifos.splice(0)) unblockFifo(fifo);
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

interface Ended {
  /** Bytes of standard output received. */
  stdout: number;
  code: number | null;
  signal: string | null;
  stderr: string;
  /** Still running after `withinMs` (then killed by the test). */
  hung: boolean;
}

/** Runs a script that may block a thread on a FIFO, note it, and finish with code 4 (or `code`). */
function runScript(
  name: string,
  options: {
    block: "pool" | "worker" | "none";
    note: boolean;
    bigOutput?: boolean;
    /** Stands in for a failed execve (Node >= 26 throws). */
    replaceFails?: boolean;
    /** A Node without process.execve (before 22.15). */
    noExecve?: boolean;
    /** Standard output that never drains (a reader that stopped). */
    stuckStdout?: boolean;
    code?: number;
    /** Where finishProcess looks for the shell to become (a missing one: this Node). */
    shell?: string;
    /** Then, in the same shell (sharing the standard streams), this command. */
    after?: string;
    env?: NodeJS.ProcessEnv;
  },
  withinMs: number,
): Promise<Ended> {
  const fifo = join(scratch, `${name}.fifo`);
  execFileSync("mkfifo", [fifo]);
  fifos.push(fifo);
  const block =
    options.block === "pool"
      ? `(await import("node:fs")).open(${JSON.stringify(fifo)}, "r", () => {});`
      : options.block === "worker"
        ? `const { Worker } = await import("node:worker_threads");
           const w = new Worker(\`require("node:fs").openSync(${JSON.stringify(JSON.stringify(fifo)).slice(1, -1)}, "r")\`, { eval: true });
           await new Promise((r) => setTimeout(r, 300)); void w.terminate(); w.unref();`
        : "";
  const script = join(scratch, `${name}.ts`);
  writeFileSync(
    script,
    `process.stdin; // created first, as the CLI's entry does (libuv makes a pipe non-blocking)
     import { finishProcess } from ${JSON.stringify(finishModule)};
     import { noteStuckThread } from ${JSON.stringify(stuckModule)};
     ${block}
     ${options.note ? `noteStuckThread("opening ${name}.fifo");` : ""}
     await new Promise((r) => setTimeout(r, 100));
     ${options.bigOutput ? 'process.stdout.write("x".repeat(200_000));' : ""}
     ${options.noExecve ? "process.execve = undefined;" : ""}
     await finishProcess(${options.code ?? 4}, {
       stdout: ${options.stuckStdout ? "{ write() {} }" : "process.stdout"},
       stderr: process.stderr,
       ${options.replaceFails ? 'replace: () => new Error("execve stand-in refused: E2BIG"),' : ""}
       ${options.shell === undefined ? "" : `shell: ${JSON.stringify(options.shell)},`}
     });`,
  );
  const child =
    options.after === undefined
      ? spawn(process.execPath, [script], {
          stdio: ["ignore", "pipe", "pipe"],
          env: options.env ?? process.env,
        })
      : spawn("sh", ["-c", `"$0" "$1"; ${options.after}`, process.execPath, script], {
          stdio: ["pipe", "pipe", "pipe"],
          env: options.env ?? process.env,
        });
  let stdout = 0;
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.length;
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => {
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      child.kill("SIGKILL");
    }, withinMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(
        hung
          ? { stdout, code: null, signal: null, stderr, hung }
          : { stdout, code, signal, stderr, hung },
      );
    });
  });
}

describe("the end of the dsfetch process", () => {
  it("replaced after giving up on stuck work: its output to a pipe arrives whole first (200 KB), then its code", async () => {
    const ended = await runScript(
      "drained",
      { block: "pool", note: true, bigOutput: true },
      20_000,
    );
    expect(ended).toMatchObject({ code: 4, signal: null, stdout: 200_000, hung: false });
    expect(ended.stderr).toContain("gave up on work stuck");
  });

  it("nothing stuck: exits with its code", async () => {
    const ended = await runScript("plain", { block: "none", note: false }, 20_000);
    expect(ended).toMatchObject({ code: 4, signal: null, hung: false });
    expect(ended.stderr).toBe("");
  });

  it.each(["pool", "worker"] as const)(
    "a %s thread stuck in a system call keeps Node from exiting at all (why finish.ts exists)",
    async (block) => {
      const ended = await runScript(`hangs-${block}`, { block, note: false }, 3000);
      expect(ended).toMatchObject({ hung: true });
    },
  );

  it.each(["pool", "worker"] as const)(
    "a %s thread given up on (noted stuck): its exit code at once, after a message naming what it was stuck on",
    async (block) => {
      const ended = await runScript(`replaced-${block}`, { block, note: true }, 20_000);
      expect(ended).toMatchObject({ code: 4, signal: null, hung: false });
      expect(ended.stderr).toBe(
        `dsfetch: gave up on work stuck in system calls on storage that stopped answering (opening replaced-${block}.fifo). A Node process cannot exit while a thread is stuck, so dsfetch replaces itself with a process that exits with its exit code, 4.\n`,
      );
    },
  );

  it("without a shell it becomes this Node, which does not run the job's NODE_OPTIONS", async () => {
    const marker = join(scratch, "preloaded");
    const preload = join(scratch, "preload.cjs");
    writeFileSync(preload, `require("node:fs").appendFileSync(${JSON.stringify(marker)}, "x");`);
    const ended = await runScript(
      "options",
      {
        block: "pool",
        note: true,
        shell: join(scratch, "no-such-sh"),
        env: { ...process.env, NODE_OPTIONS: `--require ${preload}` },
      },
      20_000,
    );
    expect(ended).toMatchObject({ code: 4, signal: null });
    expect(ended.stderr).toContain("exits with its exit code, 4.\n");
    // Once, by the dsfetch process itself; not again by the process it became.
    expect(readFileSync(marker, "utf8")).toBe("x");
  });

  it("its standard streams are blocking again for whatever shares them next (libuv made them non-blocking)", async () => {
    // The flags of the descriptors the shell shares with the process, from /proc: with
    // O_NONBLOCK (04000) left set, the shell's next write to a full pipe failed with EAGAIN,
    // its read with "Resource temporarily unavailable".
    const flags = `for fd in 0 1 2; do printf '%s:%s\\n' "$fd" "$(sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/$fd)"; done >&2`;
    const ended = await runScript("blocking", { block: "pool", note: true, after: flags }, 20_000);
    expect(ended.stderr).toContain("exits with its exit code, 4.\n");
    const found = [...ended.stderr.matchAll(/^([012]):([0-7]+)$/gm)].map(
      ([, fd, octal]) =>
        `${fd}:${(Number.parseInt(octal as string, 8) & 0o4000) === 0 ? "blocking" : "non-blocking"}`,
    );
    expect(found, ended.stderr).toEqual(["0:blocking", "1:blocking", "2:blocking"]);
  });

  it("a second interrupt (endNow): the locks this process holds are removed first, as process.exit did, then its code", async () => {
    // Review, 2026-12-07: the second signal ends by execve, which runs no 'exit' listener of
    // itself; proper-lockfile's, which removes the locks a process holds, ran in the
    // process.exit of before (a double Ctrl-C left the lock for the other workers to wait out).
    const dir = mkdtempSync(join(scratch, "locks-"));
    const lockPath = join(dir, "locks", "x.lock");
    const script = join(scratch, "end-now.ts");
    writeFileSync(
      script,
      `import { endNow } from ${JSON.stringify(finishModule)};
       import { acquireLock } from ${JSON.stringify(lockModule)};
       import { DEFAULT_TUNING } from ${JSON.stringify(tuningModule)};
       const held = await acquireLock(${JSON.stringify(lockPath)}, "x", { timing: DEFAULT_TUNING.lock });
       if (held.kind !== "acquired") process.exit(99);
       process.stderr.write("locked\\n");
       endNow(143);`,
    );
    const ran = spawnSync(process.execPath, [script], { encoding: "utf8", timeout: 20_000 });
    expect(ran.stderr).toContain("locked");
    expect(ran.status, ran.stderr).toBe(143);
    expect(existsSync(lockPath)).toBe(false);
  });

  it("output that does not drain within 2 s: lost, said so, and no success code for a cut answer", async () => {
    const ended = await runScript(
      "undrained",
      { block: "pool", note: true, stuckStdout: true, code: 0 },
      20_000,
    );
    expect(ended).toMatchObject({ code: 7, signal: null, hung: false });
    expect(ended.stderr).toContain(
      "dsfetch: its standard output did not drain within 2 s, and what was not written is lost: exit code 7.",
    );
  });

  it("a Node without process.execve: SIGKILL, exit status 137, saying why and what its code was", async () => {
    const ended = await runScript(
      "no-execve",
      { block: "pool", note: true, noExecve: true },
      20_000,
    );
    expect(ended).toMatchObject({ code: null, signal: "SIGKILL", hung: false });
    expect(ended.stderr).toContain(
      "and this dsfetch cannot replace itself (this Node has no process.execve: Node 22.15 or later has it): it ends itself with SIGKILL, exit status 137 (its own answer, above, was exit code 4).",
    );
  });

  it("execve refused: SIGKILL, exit status 137, saying why and what its code was", async () => {
    const ended = await runScript(
      "refused",
      { block: "worker", note: true, replaceFails: true },
      20_000,
    );
    expect(ended).toMatchObject({ code: null, signal: "SIGKILL", hung: false });
    expect(ended.stderr).toContain(
      "dsfetch: could not replace itself (execve stand-in refused: E2BIG): it ends itself with SIGKILL instead, exit status 137 (its own answer, above, was exit code 4).",
    );
  });
});
