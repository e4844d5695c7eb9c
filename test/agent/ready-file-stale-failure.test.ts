// A failed ready file an earlier sidecar left (a job restarted on the same shared directory:
// docker compose, Slurm, a restarted pod on the same emptyDir): before the fix, the new
// workers' `dsfetch wait` read it before the new sidecar removed it, and failed at once with
// the old error a job that would have succeeded (review, 2026-12-06). Now a failure whose
// sidecar is gone (or cannot be looked up) is given a grace to be replaced; one whose sidecar
// runs (--hold-on-failure) still ends the wait at once.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type FailedInfo,
  lookAtReadyFile,
  readReadyFile,
  removeReadyFile,
  writeReadyFile,
} from "../../src/agent/ready-file.ts";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { deadPid } from "../harness/children.ts";
import { runCli } from "../harness/cli.ts";
import { start, until } from "../harness/cli-process.ts";

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-stale-failure-"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const failed = (pid: number, at = new Date().toISOString()): FailedInfo => ({
  ready: false,
  pid,
  at,
  code: "NOT_FOUND",
  failed: "1 of 1 dataset could not be staged (missing: s3://b/missing.bin: no such key)",
});

const ready = (pid: number) => ({
  ready: true as const,
  pid,
  at: new Date().toISOString(),
  datasets: [],
});

/** A failed file as an earlier sidecar of this host (a process that has ended) left it. */
async function staleFailure(name: string): Promise<{ path: string; pid: number; at: string }> {
  const path = join(root, name);
  const pid = deadPid();
  const at = "2026-12-06T10:00:00.000Z";
  await writeReadyFile(path, failed(pid, at));
  // Realistic: this host's label, as a sidecar here writes it.
  expect(JSON.parse(await readFile(path, "utf8"))).toMatchObject({ host: hostLabel(), pid });
  return { path, pid, at };
}

describe("a failed ready file", () => {
  it("reads as before for other callers; its writer is alive, gone, or cannot be looked up", async () => {
    const live = join(root, "look-live.json");
    await writeReadyFile(live, failed(process.pid));
    const reason = failed(0).failed;
    expect(await readReadyFile(live)).toEqual({ state: "failed", code: "NOT_FOUND", reason });
    expect((await lookAtReadyFile(live)).writer?.status).toBe("alive");
    const { path, pid, at } = await staleFailure("look-gone.json");
    expect((await lookAtReadyFile(path)).writer).toEqual({ status: "gone", pid, at });
    const other = join(root, "look-other.json");
    await writeFile(other, JSON.stringify({ ...failed(process.pid), host: "another-host-ns1" }));
    expect((await lookAtReadyFile(other)).writer?.status).toBe("unknown");
    expect((await lookAtReadyFile(join(root, "none.json"))).content).toBe("");
  });

  it("of a sidecar that is gone does not end wait at once: a new sidecar's ready file, written a second later, lets it go on (exit 0)", async () => {
    const { path, pid } = await staleFailure("replaced.json");
    const worker = start(["wait", "--ready-file", path, "--timeout", "1m"], {});
    try {
      await until(async () => worker.stderr().includes("wait: waiting for"), 15_000);
      await sleep(1_000);
      // Before the fix: exited at once with NOT_FOUND's code (3).
      expect(worker.child.exitCode, worker.stderr()).toBeNull();
      expect(worker.stderr()).toContain("may be an earlier run's");
      await writeReadyFile(path, ready(process.pid));
      const ended = await worker.exit;
      expect(ended.code, worker.stderr()).toBe(0);
      // Said once, naming the sidecar and the grace.
      expect(
        worker
          .stderr()
          .split("\n")
          .filter((line) =>
            line.startsWith(
              `wait: ${path} says the sidecar failed, but its sidecar (pid ${pid}, written 2026-12-06T10:00:00.000Z) is gone: it may be an earlier run's; waiting up to 15 s for a new sidecar to replace it`,
            ),
          ),
      ).toHaveLength(1);
    } finally {
      worker.child.kill("SIGKILL");
    }
  }, 30_000);

  it("of a sidecar that is gone, removed by a new sidecar that then fails: ends wait at once with the new failure", async () => {
    // The new failure was written while wait ran: this run's, final even with its sidecar
    // gone (one without --hold-on-failure exits after writing it).
    const { path } = await staleFailure("replaced-by-failure.json");
    const worker = start(["wait", "--ready-file", path, "--timeout", "1m"], {});
    try {
      await until(async () => worker.stderr().includes("may be an earlier run's"), 15_000);
      await removeReadyFile(path);
      await sleep(1_000);
      expect(worker.child.exitCode, worker.stderr()).toBeNull();
      const written = Date.now();
      await writeReadyFile(path, { ...failed(deadPid()), code: "ACCESS_DENIED", failed: "denied" });
      const ended = await worker.exit;
      expect(ended.code, worker.stderr()).toBe(4);
      expect((ended.at - written) / 1000).toBeLessThan(5);
      expect(worker.stderr()).toContain("wait: the sidecar failed: denied");
    } finally {
      worker.child.kill("SIGKILL");
    }
  }, 30_000);

  it("of a sidecar that is gone, left alone: wait ends with its error after the grace (here what is left of --timeout), saying the sidecar is gone", async () => {
    const { path, pid } = await staleFailure("left.json");
    const started = performance.now();
    const result = await runCli(["wait", "--ready-file", path, "--timeout", "2s"], {
      timeoutMs: 20_000,
    });
    const seconds = (performance.now() - started) / 1000;
    // NOT_FOUND's code, not WAIT_TIMEOUT's (9), and not at once.
    expect(result.code, result.stderr).toBe(3);
    expect(seconds).toBeGreaterThanOrEqual(1.5);
    expect(result.stderr).toContain("waiting up to 2 s for a new sidecar to replace it");
    expect(result.stderr).toContain(
      `wait: the sidecar failed: ${failed(0).failed} (said by a sidecar that is no longer known to run: its sidecar (pid ${pid}, written 2026-12-06T10:00:00.000Z) is gone; no new sidecar replaced the file within 2 s)`,
    );
    expect(result.stderr).not.toContain("WAIT_TIMEOUT");
  });

  it("of a sidecar on another host or PID namespace (cannot be looked up): given the grace too", async () => {
    const path = join(root, "other-host.json");
    await writeFile(path, JSON.stringify({ ...failed(process.pid), host: "another-host-ns1" }));
    const started = performance.now();
    const result = await runCli(["wait", "--ready-file", path, "--timeout", "2s"], {
      timeoutMs: 20_000,
    });
    expect(result.code, result.stderr).toBe(3);
    expect((performance.now() - started) / 1000).toBeGreaterThanOrEqual(1.5);
    expect(result.stderr).toContain(
      `ran on another host or PID namespace and cannot be looked up from here: it may be an earlier run's`,
    );
  });

  it("of a sidecar that runs (--hold-on-failure): ends wait at once with its code", async () => {
    const path = join(root, "live.json");
    await writeReadyFile(path, failed(process.pid));
    const started = performance.now();
    const result = await runCli(["wait", "--ready-file", path, "--timeout", "1m"], {
      timeoutMs: 20_000,
    });
    expect(result.code, result.stderr).toBe(3);
    // At once: well within the 15 s grace.
    expect((performance.now() - started) / 1000).toBeLessThan(5);
    expect(result.stderr).toContain(`wait: the sidecar failed: ${failed(0).failed}`);
    expect(result.stderr).not.toContain("earlier run's");
  });
});
