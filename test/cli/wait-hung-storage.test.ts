// `dsfetch wait --ready-file` on storage that stops answering: before the fix, its read of the
// ready file never came back (NFS whose server went away), so --timeout was never looked at
// and SIGTERM was never answered (still running after 10 minutes). Now each read is bounded:
// the timeout (exit 9) and an interrupt (130) are answered, and, as a thread is still stuck in
// open(2), the CLI then replaces itself with a process that exits with that answer
// (cli/finish.ts: execve; until 2026-12-07 SIGKILL, exit status 137; README "Exit codes").
//
// The read is really stuck in the kernel: the ready file is a FIFO (open(2) waits for a
// writer, as on a mount whose server is gone), opened for writing after each test so that no
// thread stays blocked.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { start, until } from "../harness/cli-process.ts";
import { unblockFifo } from "../harness/fifos.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-wait-hung-"));
const fifos: string[] = [];
afterEach(() => {
  for (const fifo of fifos.splice(0)) unblockFifo(fifo);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function fifo(name: string): string {
  const path = join(root, name);
  execFileSync("mkfifo", [path]);
  fifos.push(path);
  return path;
}

/**
 * Runs `dsfetch wait <args>` for `body`, killed after 20 s (bounded: a SIGTERM never answered
 * fails the test instead of hanging it) and at the end.
 */
async function withWait(
  args: string[],
  body: (worker: ReturnType<typeof start>) => Promise<void>,
): Promise<void> {
  const worker = start(["wait", ...args], {});
  const bound = setTimeout(() => worker.child.kill("SIGKILL"), 20_000);
  try {
    await body(worker);
  } finally {
    clearTimeout(bound);
    worker.child.kill("SIGKILL");
  }
}

describe("dsfetch wait on a ready file whose storage stopped answering", () => {
  it("times out (its answer: exit 9), naming the file that did not answer, within seconds", async () => {
    const path = fifo("ready-timeout.json");
    const started = performance.now();
    // Bounded: without the bound on the read, the CLI hangs for good.
    const ran = await runCli(["wait", "--ready-file", path, "--timeout", "1s"], {
      timeoutMs: 15_000,
    });
    const seconds = (performance.now() - started) / 1000;
    expect(seconds, ran.stderr).toBeLessThan(10);
    expect(ran.stderr).toContain(
      `wait: ${path} did not say ready within 1s (${path} did not answer`,
    );
    expect(ran.stderr).toContain("[WAIT_TIMEOUT]");
    // A thread is still stuck in open(2): the CLI ends itself instead of hanging in exit.
    expect(ran.stderr).toContain(`reading the ready file ${path}`);
    expect(ran.stderr).toContain("replaces itself with a process that exits with its exit code, 9");
    expect(ran).toMatchObject({ code: 9, signal: null });
  }, 30_000);

  it("answers SIGTERM (its answer: exit 130) within seconds", async () => {
    const path = fifo("ready-sigterm.json");
    // Bounded: without the fix, SIGTERM is never answered.
    await withWait(["--ready-file", path, "--timeout", "5m"], async (worker) => {
      await until(async () => worker.stderr().includes("wait: waiting for"), 10_000);
      await sleep(500);
      const sent = Date.now();
      worker.child.kill("SIGTERM");
      const ended = await worker.exit;
      expect((ended.at - sent) / 1000, worker.stderr()).toBeLessThan(6);
      expect(worker.stderr()).toContain(
        `wait: interrupted while waiting for ${path} (${path} did not answer`,
      );
      expect(worker.stderr()).toContain(
        "replaces itself with a process that exits with its exit code, 130",
      );
      expect(ended).toMatchObject({ code: 130, signal: null });
    });
  }, 30_000);

  it("a second SIGTERM while the read is still stuck: exit 143 at once, not a process.exit that waits for the read", async () => {
    const path = fifo("ready-twice.json");
    // Review, 2026-12-07: the second signal called process.exit, which waits for the thread
    // stuck in open(2) for as long as the storage is gone (here: until the test's clean-up).
    await withWait(["--ready-file", path, "--timeout", "5m"], async (worker) => {
      await until(async () => worker.stderr().includes("wait: waiting for"), 10_000);
      // Well within the first signal's grace for the read in flight (1 s from its start):
      // the second signal must meet it, not the end that grace leads to (review).
      await sleep(200);
      const sent = Date.now();
      worker.child.kill("SIGTERM");
      await sleep(10);
      worker.child.kill("SIGTERM");
      const ended = await worker.exit;
      expect((ended.at - sent) / 1000, worker.stderr()).toBeLessThan(5);
      expect(ended, worker.stderr()).toMatchObject({ code: 143, signal: null });
    });
  }, 30_000);

  it("a SIGTERM that meets a read just started, which then answers: exit 130, no SIGKILL", async () => {
    // Found when the tests' CLI started faster: a SIGTERM right after "waiting for" met the
    // first read in flight, noted as stuck at once, and the CLI ended with SIGKILL. A read is
    // given READ_GRACE_MS (1 s) from its start; this one answers ~0.1 s after the signal.
    const path = fifo("ready-answers.json");
    await withWait(["--ready-file", path, "--timeout", "5m"], async (worker) => {
      await until(async () => worker.stderr().includes("wait: waiting for"), 10_000);
      worker.child.kill("SIGTERM");
      await sleep(100);
      // A writer: the read's open(2) returns, and it reads nothing.
      unblockFifo(path);
      const ended = await worker.exit;
      expect(ended.code, worker.stderr()).toBe(130);
      expect(worker.stderr()).toContain(`wait: interrupted while waiting for ${path}`);
      expect(worker.stderr()).not.toContain("did not answer");
      expect(worker.stderr()).not.toContain("gave up on work stuck");
    });
  }, 30_000);

  it("a SIGTERM during the --url request starts no read of a hung ready file: exit 130, no SIGKILL", async () => {
    // Review, 2026-12-07: after an interrupt during the /readyz request, the loop went on to
    // read the ready file; on hung storage that read was one more call given up on, and the
    // CLI ended with SIGKILL (137) instead of 130.
    const path = fifo("ready-url.json");
    const held: Socket[] = [];
    // A sidecar that takes the connection and never answers.
    const server = createServer((socket) => {
      held.push(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    const url = `http://127.0.0.1:${port}/readyz`;
    try {
      await withWait(["--url", url, "--ready-file", path, "--timeout", "5m"], async (worker) => {
        await until(async () => held.length > 0, 10_000);
        worker.child.kill("SIGTERM");
        const ended = await worker.exit;
        expect(ended.code, worker.stderr()).toBe(130);
        expect(worker.stderr()).toContain("wait: interrupted while waiting for");
        expect(worker.stderr()).not.toContain("gave up on work stuck");
      });
    } finally {
      for (const socket of held) socket.destroy();
      server.close();
    }
  }, 30_000);
});
