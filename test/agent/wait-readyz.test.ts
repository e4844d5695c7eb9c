// `dsfetch wait` with the sidecar's /readyz (review, 2026-12-06). In the pod `dsfetch k8s`
// renders, the sidecar and the `dsfetch-wait` container have their own PID namespaces, so a
// failed ready file's writer cannot be looked up: a failure the running sidecar held reached
// the pod only after the 15 s grace meant for an earlier run's file, saying its sidecar was
// gone; and a "ready" file an earlier sidecar left on the same emptyDir let the gate pass
// before the new sidecar had staged anything. The wait container now asks /readyz too:
// - a failure /readyz says (503 "failed: …", "code: …") is final at once, with its code;
// - with --url, a ready file counts only once /readyz says ready;
// - `wait --url` alone ends with a held failure's code (it waited for its timeout).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { FailedInfo } from "../../src/agent/ready-file.ts";
import { start, until } from "../harness/cli-process.ts";
import { freePort } from "../harness/minio-binary.ts";
import { createBucket, testEnv } from "../harness/s3.ts";

let root: string;
let server: Server | undefined;
/** What the stand-in sidecar's /readyz answers now. */
let answer: { status: number; body: string } = { status: 503, body: "staging\n" };

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-wait-readyz-"));
});

afterEach(async () => {
  const open = server;
  server = undefined;
  if (open !== undefined) await new Promise((resolve) => open.close(resolve));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A stand-in sidecar answering /readyz with `answer`. */
async function standIn(): Promise<string> {
  const created = createServer((_request, response) => {
    response.writeHead(answer.status, { "content-type": "text/plain" });
    response.end(answer.body);
  });
  server = created;
  await new Promise<void>((resolve) => created.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(created.address() as AddressInfo).port}/readyz`;
}

/** A ready file as a sidecar in another PID namespace (or on another host) writes it. */
async function fileFromElsewhere(name: string, content: object): Promise<string> {
  const path = join(root, name);
  await writeFile(path, JSON.stringify({ ...content, host: "another-host-ns4026531836" }));
  return path;
}

const failure: FailedInfo = {
  ready: false,
  pid: 7,
  at: "2026-12-06T10:00:00.000Z",
  code: "ACCESS_DENIED",
  failed: "1 of 1 dataset could not be staged (x: access denied)",
};

describe("wait --ready-file --url (the pod's dsfetch-wait)", () => {
  it("a failure the running sidecar holds (its /readyz says failed) ends the wait at once with the file's code", async () => {
    answer = { status: 503, body: "failed: 1 dataset could not be staged\ncode: ACCESS_DENIED\n" };
    const url = await standIn();
    const path = await fileFromElsewhere("held.json", failure);
    const began = Date.now();
    const worker = start(["wait", "--ready-file", path, "--url", url, "--timeout", "1m"], {});
    const ended = await worker.exit;
    expect(ended.code, worker.stderr()).toBe(4);
    // At once: not after the 15 s grace for an earlier run's file.
    expect(Date.now() - began).toBeLessThan(10_000);
    expect(worker.stderr()).toContain("the sidecar failed: 1 of 1 dataset could not be staged");
    expect(worker.stderr()).not.toContain("no longer known to run");
  });

  it("a ready file counts only once /readyz says ready (one an earlier sidecar left does not let the gate pass)", async () => {
    answer = { status: 503, body: "staging\n" };
    const url = await standIn();
    const path = await fileFromElsewhere("stale-ready.json", {
      ready: true,
      pid: 7,
      at: "2026-12-06T10:00:00.000Z",
      datasets: [],
    });
    const worker = start(["wait", "--ready-file", path, "--url", url, "--timeout", "1m"], {});
    try {
      await until(async () => worker.stderr().includes("says ready, but"), 15_000);
      await sleep(1_500);
      expect(worker.child.exitCode, worker.stderr()).toBeNull();
      expect(worker.stderr()).toContain("says staging");
      answer = { status: 200, body: "ready\n" };
      const ended = await worker.exit;
      expect(ended.code, worker.stderr()).toBe(0);
    } finally {
      worker.child.kill("SIGKILL");
    }
  });

  it("a failed file while /readyz says staging is an earlier run's: the wait goes on until ready", async () => {
    answer = { status: 503, body: "staging\n" };
    const url = await standIn();
    const path = await fileFromElsewhere("stale-failed.json", failure);
    const worker = start(["wait", "--ready-file", path, "--url", url, "--timeout", "1m"], {});
    try {
      await until(async () => worker.stderr().includes("it is an earlier run's file"), 15_000);
      // As a real sidecar does: its file first, then /readyz 200.
      await writeFile(
        path,
        JSON.stringify({ ready: true, pid: 7, at: new Date().toISOString(), datasets: [] }),
      );
      answer = { status: 200, body: "ready\n" };
      const ended = await worker.exit;
      expect(ended.code, worker.stderr()).toBe(0);
    } finally {
      worker.child.kill("SIGKILL");
    }
  });
});

describe("wait --ready-file --url, /readyz 200 from another sidecar (a hostNetwork pod's port)", () => {
  it("does not let the gate pass while the pod's own file says its sidecar failed", async () => {
    // Another pod's sidecar on the node's loopback answers ready; this pod's failed (port taken).
    answer = { status: 200, body: "ready\n" };
    const url = await standIn();
    const path = await fileFromElsewhere("taken-port.json", failure);
    const worker = start(["wait", "--ready-file", path, "--url", url, "--timeout", "3s"], {});
    const ended = await worker.exit;
    // Its own file's error at the end of the wait (the grace is cut by --timeout), never 0.
    expect(ended.code, worker.stderr()).toBe(4);
  });

  it("the failed-file line is said once, not at every poll", async () => {
    answer = { status: 503, body: "staging\n" };
    const url = await standIn();
    const path = await fileFromElsewhere("said-once.json", failure);
    const worker = start(["wait", "--ready-file", path, "--url", url, "--timeout", "2s"], {});
    await worker.exit;
    // Once as a line of its own (the timeout's message repeats it, as it does every reason).
    const lines = worker
      .stderr()
      .split("\n")
      .filter((line) => line.startsWith("wait: ") && line.includes("it is an earlier run's file"));
    expect(lines, worker.stderr()).toHaveLength(1);
  });
});

describe("wait --ready-file --url, the file not saying the failure /readyz says", () => {
  it("ends at once with /readyz's code (the sidecar could not write its file)", async () => {
    answer = { status: 503, body: "failed: 1 dataset could not be staged\ncode: NOT_FOUND\n" };
    const url = await standIn();
    const path = await fileFromElsewhere("unwritten.json", {
      ready: true,
      pid: 7,
      at: "2026-12-06T10:00:00.000Z",
      datasets: [],
    });
    const worker = start(["wait", "--ready-file", path, "--url", url, "--timeout", "1m"], {});
    const ended = await worker.exit;
    expect(ended.code, worker.stderr()).toBe(3);
    expect(worker.stderr()).toContain("1 dataset could not be staged");
  });
});

describe("wait --url alone", () => {
  it("a URL that answers 404 (the sidecar's bare address) says where a sidecar answers", async () => {
    answer = { status: 404, body: "not found: try /healthz, /readyz or /metrics\n" };
    const url = (await standIn()).replace(/\/readyz$/, "/");
    const worker = start(["wait", "--url", url, "--timeout", "2s"], {});
    const ended = await worker.exit;
    expect(ended.code, worker.stderr()).toBe(9);
    expect(worker.stderr()).toContain(
      `wait: ${url} says HTTP 404 (not found: a dsfetch sidecar answers on /readyz)`,
    );
  });

  it("ends with the code of a failure /readyz says (it waited for its timeout)", async () => {
    answer = { status: 503, body: "failed: 2 datasets could not be staged\ncode: NOT_FOUND\n" };
    const url = await standIn();
    const worker = start(["wait", "--url", url, "--timeout", "1m"], {});
    const ended = await worker.exit;
    expect(ended.code, worker.stderr()).toBe(3);
    expect(worker.stderr()).toContain("2 datasets could not be staged");
  });

  it("a real sidecar holding a failure: /readyz names its code, and wait --url ends with it", async () => {
    const bucket = await createBucket("readyz");
    const storage = await mkdtemp(join(root, "sidecar-"));
    const port = await freePort();
    const sidecar = start(
      [
        "sidecar",
        "--datasets",
        "-",
        "--storage-root",
        storage,
        "--team",
        "ml",
        "--mount-root",
        join(storage, "mnt"),
        "--listen",
        `127.0.0.1:${port}`,
        "--hold-on-failure",
      ],
      testEnv(),
      JSON.stringify([{ uri: `s3://${bucket}/missing.bin`, name: "missing" }]),
    );
    try {
      const worker = start(
        ["wait", "--url", `http://127.0.0.1:${port}/readyz`, "--timeout", "2m"],
        {},
      );
      const ended = await worker.exit;
      expect(ended.code, worker.stderr()).toBe(3);
      const readyz = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(readyz.status).toBe(503);
      expect(await readyz.text()).toMatch(/^failed: .*\ncode: NOT_FOUND\n$/);
      expect(sidecar.child.exitCode).toBeNull();
    } finally {
      sidecar.child.kill("SIGTERM");
      await sidecar.exit;
    }
  });
});
