// The agent in a job, with real processes: `run` as the container entrypoint, `sidecar`
// with `wait` workers, and signals during staging.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { exists, jobArgs, start, until } from "../harness/cli-process.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { freePort } from "../harness/minio-binary.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let proxy: FaultProxy;
const big = randomBytes(16 * 1024 * 1024);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-agent-"));
  bucket = await createBucket("agent");
  await putObject(bucket, "small/labels.txt", "cat\ndog\n");
  await putObject(bucket, "big/blob.bin", big);
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  proxy.throttle(undefined);
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

describe("run (container entrypoint)", () => {
  it("stages, links and runs the command, which sees the datasets; its exit code becomes ours", async () => {
    const storage = await mkdtemp(join(root, "run-"));
    const mounts = join(storage, "mnt");
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
        mounts,
        "--",
        "sh",
        "-c",
        'cat "$DSFETCH_PATH_LABELS/labels.txt"; echo "at $DSFETCH_PATH_LABELS"; echo "pool $(printenv UV_THREADPOOL_SIZE || echo unset)"; exit 7',
      ],
      {
        env: { ...testEnv(), UV_THREADPOOL_SIZE: undefined },
        stdin: JSON.stringify([{ uri: `s3://${bucket}/small/`, name: "labels" }]),
      },
    );
    expect(result.code).toBe(7);
    // dsfetch's own thread pool size (cli/thread-pool-size.ts) is not the command's.
    expect(result.stdout).toBe(`cat\ndog\nat ${join(mounts, "labels")}\npool unset\n`);
  });

  it("a UV_THREADPOOL_SIZE the user set is the command's too", async () => {
    const storage = await mkdtemp(join(root, "run-pool-"));
    const result = await runCli(jobArgs(storage, ["printenv", "UV_THREADPOOL_SIZE"]), {
      env: { ...testEnv(), UV_THREADPOOL_SIZE: "7" },
      stdin: JSON.stringify([{ uri: `s3://${bucket}/small/`, name: "labels" }]),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("7\n");
  });

  it("a staging failure exits with its code before the command runs", async () => {
    const storage = await mkdtemp(join(root, "run-fail-"));
    const marker = join(storage, "ran");
    const result = await runCli(jobArgs(storage, ["touch", marker]), {
      env: testEnv(),
      stdin: JSON.stringify([{ uri: `s3://${bucket}/no/such/object.bin` }]),
    });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("NOT_FOUND");
    expect(result.stderr).toContain("not running touch");
    expect(await exists(marker)).toBe(false);
  });

  it("forwards SIGTERM to the command and returns its exit code", async () => {
    const storage = await mkdtemp(join(root, "run-sig-"));
    const script =
      "process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(42); }); console.log('started'); setInterval(() => {}, 1000);";
    const run = start(
      jobArgs(storage, [process.execPath, "-e", script]),
      testEnv(),
      JSON.stringify([{ uri: `s3://${bucket}/small/`, name: "labels" }]),
    );
    await until(async () => run.stdout().includes("started"));
    run.child.kill("SIGTERM");
    const { code } = await run.exit;
    expect(run.stdout()).toContain("got SIGTERM");
    expect(code).toBe(42);
  });

  it("SIGTERM during a slow download: exits promptly, nothing half-published, temporary data removed", async () => {
    const storage = await mkdtemp(join(root, "run-abort-"));
    const data = join(storage, "ml", "data");
    proxy.throttle(2 * 1024 * 1024);
    try {
      const run = start(
        jobArgs(storage, ["touch", join(storage, "ran")]),
        { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint },
        JSON.stringify([{ uri: `s3://${bucket}/big/blob.bin`, name: "blob" }]),
      );
      await until(
        async () => (await readdir(join(data, ".dsfetch", "tmp")).catch(() => [])).length > 0,
      );
      await sleep(300);
      const sent = Date.now();
      run.child.kill("SIGTERM");
      const { code, at } = await run.exit;
      expect(at - sent).toBeLessThan(5_000);
      expect(code).toBe(130);
      expect(run.stderr()).toContain("INTERRUPTED");
      expect(await exists(join(data, "blob"))).toBe(false);
      expect(await readdir(join(data, ".dsfetch", "tmp"))).toEqual([]);
      expect(await readdir(join(data, ".dsfetch", "locks"))).toEqual([]);
      expect(await exists(join(storage, "ran"))).toBe(false);
    } finally {
      proxy.throttle(undefined);
    }
  });
});

describe("sidecar and wait", () => {
  it("workers proceed only after the sidecar is ready; /metrics is Prometheus text; SIGTERM ends it cleanly", async () => {
    const storage = await mkdtemp(join(root, "sidecar-"));
    const mounts = join(storage, "mnt");
    const readyFile = join(storage, "ready.json");
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env = { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint };
    const fileWorker = start(["wait", "--ready-file", readyFile, "--timeout", "2m"], env);
    proxy.throttle(8 * 1024 * 1024);
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
        mounts,
        "--listen",
        `127.0.0.1:${port}`,
        "--ready-file",
        readyFile,
        "--json",
      ],
      env,
      JSON.stringify([
        { uri: `s3://${bucket}/big/blob.bin`, name: "blob" },
        { uri: `s3://${bucket}/small/`, name: "labels" },
      ]),
    );
    await until(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.status === 200);
    const urlWorker = start(["wait", "--url", `${url}/readyz`, "--timeout", "2m"], env);
    // While staging: alive, not ready.
    expect((await fetch(`${url}/readyz`)).status).toBe(503);
    await until(async () => sidecar.stdout().includes('"type":"ready"'), 60_000);
    proxy.throttle(undefined);
    const readyAt = Date.now();
    const [viaFile, viaUrl] = await Promise.all([fileWorker.exit, urlWorker.exit]);
    expect(viaFile.code).toBe(0);
    expect(viaUrl.code).toBe(0);
    // Neither worker went on before the sidecar was ready (allowing for the poll interval).
    const readyLine =
      sidecar
        .stdout()
        .split("\n")
        .find((line) => line.includes('"type":"ready"')) ?? "{}";
    const readyTime = Date.parse(JSON.parse(readyLine).time);
    expect(viaFile.at).toBeGreaterThanOrEqual(readyTime);
    expect(viaUrl.at).toBeGreaterThanOrEqual(readyTime);
    expect(readyAt - readyTime).toBeLessThan(10_000);
    expect(JSON.parse(await readFile(readyFile, "utf8"))).toMatchObject({ ready: true });
    expect(await readFile(join(mounts, "labels", "labels.txt"), "utf8")).toBe("cat\ndog\n");

    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const line of metrics.trim().split("\n")) {
      expect(line).toMatch(
        /^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{dataset="[^"]*"\})? \d+(\.\d+)?)$/,
      );
    }
    expect(metrics).toContain(`dsfetch_bytes_fetched_total{dataset="blob"} ${big.length}`);
    expect(metrics).toContain("dsfetch_ready 1");
    // In use while the sidecar runs.
    const list = await runCli(["list", "--storage-root", storage, "--team", "ml", "--json"], {
      env,
    });
    expect(
      JSON.parse(list.stdout).datasets.every((d: { inUse: string[] }) => d.inUse.length === 1),
    ).toBe(true);

    sidecar.child.kill("SIGTERM");
    const ended = await sidecar.exit;
    expect(ended.code).toBe(0);
    expect(await exists(readyFile)).toBe(false);
    const after = await runCli(["list", "--storage-root", storage, "--team", "ml", "--json"], {
      env,
    });
    expect(
      JSON.parse(after.stdout).datasets.every((d: { inUse: string[] }) => d.inUse.length === 0),
    ).toBe(true);
  });

  it("wait gives up after --timeout with exit 9", async () => {
    const result = await runCli(
      ["wait", "--ready-file", join(root, "never.json"), "--timeout", "1s"],
      { env: testEnv() },
    );
    expect(result.code).toBe(9);
    expect(result.stderr).toContain("did not say ready within 1s");
  });

  it("wait needs something to wait for", async () => {
    const result = await runCli(["wait"], { env: testEnv() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--ready-file <path> or --url <url>");
  });
});
