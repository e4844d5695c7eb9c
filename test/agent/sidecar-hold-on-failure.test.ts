// A native sidecar (restartPolicy Always) that exits is started again by the kubelet, and
// stages again, for good: a failed staging never failed the pod (review, 2026-12-06). With
// --hold-on-failure (what `dsfetch k8s` renders) it stays up saying why, and the pod's
// `dsfetch wait` init container fails with that error at once.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { start } from "../harness/cli-process.ts";
import { freePort } from "../harness/minio-binary.ts";
import { createBucket, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-hold-"));
  bucket = await createBucket("hold");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function sidecarArgs(storage: string, port: number, readyFile: string, hold: boolean): string[] {
  return [
    "sidecar",
    "--datasets",
    "-",
    "--storage-root",
    storage,
    "--team",
    "ml",
    "--mount-root",
    join(storage, "mnt"),
    "--ephemeral-root",
    join(storage, "ephemeral"),
    "--listen",
    `127.0.0.1:${port}`,
    "--ready-file",
    readyFile,
    ...(hold ? ["--hold-on-failure"] : []),
  ];
}

describe("sidecar --hold-on-failure", () => {
  it("stays up after a failed staging (/readyz 503 saying why, the ready file failed); wait fails with its code; SIGTERM ends it with that code", async () => {
    const storage = await mkdtemp(join(root, "held-"));
    const readyFile = join(storage, "ready.json");
    const port = await freePort();
    const missing = JSON.stringify([{ uri: `s3://${bucket}/missing.bin`, name: "missing" }]);
    const sidecar = start(sidecarArgs(storage, port, readyFile, true), testEnv(), missing);
    const waiter = start(["wait", "--ready-file", readyFile, "--timeout", "2m"], testEnv());
    const waited = await waiter.exit;
    // NOT_FOUND's exit code, at once, not the timeout.
    expect(waited.code).toBe(3);
    expect(JSON.parse(await readFile(readyFile, "utf8"))).toMatchObject({
      ready: false,
      code: "NOT_FOUND",
    });
    // Still up a while later, saying why.
    await sleep(1_500);
    expect(sidecar.child.exitCode).toBeNull();
    const readyz = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.text()).toMatch(/^failed: /);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    sidecar.child.kill("SIGTERM");
    expect((await sidecar.exit).code).toBe(3);
  });

  it("without it, the sidecar exits after a failed staging, with its code", async () => {
    const storage = await mkdtemp(join(root, "plain-"));
    const readyFile = join(storage, "ready.json");
    const port = await freePort();
    const missing = JSON.stringify([{ uri: `s3://${bucket}/missing.bin`, name: "missing" }]);
    const sidecar = start(sidecarArgs(storage, port, readyFile, false), testEnv(), missing);
    const ended = await sidecar.exit;
    expect(ended.code).toBe(3);
  });
});
