// The real S3 server the tests run against (never a mock). startS3Server() chooses, in order:
//   1. env            DSFETCH_TEST_S3_ENDPOINT (+ DSFETCH_TEST_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY)
//   2. testcontainers a MinIO container, when a Docker engine answers
//   3. minio-binary   MinIO built from source with `go install`, cached once per machine
// DSFETCH_TEST_S3_KIND=env|testcontainers|minio-binary forces one choice.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import {
  ensureMinioBinary,
  GoNotFoundError,
  goSearchDescription,
  type Log,
  MINIO_MODULE,
  MINIO_VERSION,
  minioBinaryPath,
  startMinioBinary,
  TEST_KMS_SECRET_KEY,
} from "./minio-binary.ts";

export type S3ServerKind = "env" | "testcontainers" | "minio-binary";
const KINDS: readonly S3ServerKind[] = ["env", "testcontainers", "minio-binary"];

/** What tests need to reach the server (serializable: passed from global setup to workers). */
export interface S3ServerInfo {
  kind: S3ServerKind;
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: "us-east-1";
}

export interface S3Server extends S3ServerInfo {
  /** e.g. `minio-binary (MinIO v0.0.0-… at http://127.0.0.1:PORT)` */
  description: string;
  stop(): Promise<void>;
}

/** Pinned MinIO image for the testcontainers route. */
export const MINIO_IMAGE = "minio/minio:RELEASE.2025-09-07T16-13-09Z";

/** Fixed root credentials of the MinIO servers the harness starts itself. */
export const TEST_ACCESS_KEY_ID = "dsfetch-test";
export const TEST_SECRET_ACCESS_KEY = "dsfetch-test-secret-key";

const DOCKER_PROBE_TIMEOUT_MS = 5_000;

const stderrLog: Log = (line) => {
  process.stderr.write(`${line}\n`);
};

export interface StartS3ServerOptions {
  /** Progress and the "which server" line go here (default: stderr). */
  log?: Log;
  /** Prefix of the "which server" line (default "dsfetch tests"). */
  label?: string;
}

export async function startS3Server(opts: StartS3ServerOptions = {}): Promise<S3Server> {
  const log = opts.log ?? stderrLog;
  const label = opts.label ?? "dsfetch tests";
  const server = await chooseAndStart(log);
  log(`${label}: S3 = ${server.description}`);
  return server;
}

async function chooseAndStart(log: Log): Promise<S3Server> {
  const forced = process.env.DSFETCH_TEST_S3_KIND;
  if (forced && !KINDS.includes(forced as S3ServerKind)) {
    throw new Error(`DSFETCH_TEST_S3_KIND=${forced}: expected one of ${KINDS.join(", ")}`);
  }
  const allowed = (k: S3ServerKind): boolean => !forced || forced === k;
  const tried: string[] = [];

  // 1. An endpoint given in the environment.
  if (allowed("env") && process.env.DSFETCH_TEST_S3_ENDPOINT) return fromEnv();
  tried.push(
    process.env.DSFETCH_TEST_S3_ENDPOINT
      ? `env: skipped (DSFETCH_TEST_S3_KIND=${forced})`
      : "env: DSFETCH_TEST_S3_ENDPOINT is not set",
  );
  if (forced === "env") throw noServer(tried);

  // 2. Docker + testcontainers.
  if (allowed("testcontainers")) {
    const docker = await probeDocker();
    if (docker.ok) {
      try {
        return await startContainer();
      } catch (e) {
        const why = `testcontainers: starting ${MINIO_IMAGE} failed: ${errorText(e)}`;
        tried.push(why);
        if (forced) throw noServer(tried);
        log(`dsfetch tests: ${why}; trying the next option`);
      }
    } else {
      tried.push(`testcontainers: no Docker engine (${docker.reason})`);
      if (forced) throw noServer(tried);
    }
  } else {
    tried.push(`testcontainers: skipped (DSFETCH_TEST_S3_KIND=${forced})`);
  }

  // 3. MinIO built from source.
  if (allowed("minio-binary")) {
    try {
      const binary = await ensureMinioBinary(log);
      const running = await startMinioBinary({
        binary,
        accessKeyId: TEST_ACCESS_KEY_ID,
        secretAccessKey: TEST_SECRET_ACCESS_KEY,
      });
      return {
        kind: "minio-binary",
        endpoint: running.endpoint,
        accessKeyId: TEST_ACCESS_KEY_ID,
        secretAccessKey: TEST_SECRET_ACCESS_KEY,
        region: "us-east-1",
        description: `minio-binary (MinIO ${MINIO_VERSION} at ${running.endpoint}, pid ${running.pid})`,
        stop: running.stop,
      };
    } catch (e) {
      if (!(e instanceof GoNotFoundError)) throw e; // a broken build or start is not "none found"
      tried.push(`minio-binary: ${e.message}`);
    }
  } else {
    tried.push(`minio-binary: skipped (DSFETCH_TEST_S3_KIND=${forced})`);
  }
  throw noServer(tried);
}

function fromEnv(): S3Server {
  const endpoint = process.env.DSFETCH_TEST_S3_ENDPOINT ?? "";
  const accessKeyId = process.env.DSFETCH_TEST_S3_ACCESS_KEY_ID;
  const secretAccessKey = process.env.DSFETCH_TEST_S3_SECRET_ACCESS_KEY;
  const missing = [
    accessKeyId ? undefined : "DSFETCH_TEST_S3_ACCESS_KEY_ID",
    secretAccessKey ? undefined : "DSFETCH_TEST_S3_SECRET_ACCESS_KEY",
  ].filter((x): x is string => x !== undefined);
  if (missing.length > 0 || !accessKeyId || !secretAccessKey) {
    throw new Error(
      `DSFETCH_TEST_S3_ENDPOINT is set (${endpoint}) but ${missing.join(" and ")} ` +
        `${missing.length > 1 ? "are" : "is"} not: set the keys of that S3 server too, ` +
        "or unset DSFETCH_TEST_S3_ENDPOINT to let the tests start MinIO themselves.",
    );
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new Error(
      `DSFETCH_TEST_S3_ENDPOINT=${endpoint} is not a URL (expected http(s)://host:port)`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`DSFETCH_TEST_S3_ENDPOINT=${endpoint}: expected an http:// or https:// URL`);
  }
  const clean = endpoint.replace(/\/+$/, "");
  return {
    kind: "env",
    endpoint: clean,
    accessKeyId,
    secretAccessKey,
    region: "us-east-1",
    description: `env (DSFETCH_TEST_S3_ENDPOINT=${clean})`,
    stop: async () => {},
  };
}

/** Does a Docker engine answer? Never hangs: `docker info` gets 5 s. */
async function probeDocker(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const cli = await new Promise<{ ok: true } | { ok: false; reason: string; noCli?: boolean }>(
    (resolve) => {
      const child = spawn("docker", ["info", "--format", "{{.ServerVersion}}"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let err = "";
      child.stderr.on("data", (c: Buffer) => {
        err += c.toString("utf8");
      });
      child.stdout.resume();
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve({
          ok: false,
          reason: `\`docker info\` did not answer within ${DOCKER_PROBE_TIMEOUT_MS / 1000}s`,
        });
      }, DOCKER_PROBE_TIMEOUT_MS);
      child.on("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve(
          e.code === "ENOENT"
            ? { ok: false, reason: "docker CLI not found", noCli: true }
            : { ok: false, reason: `docker info: ${e.message}` },
        );
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        const firstLine = err.trim().split("\n").find(Boolean) ?? `exit code ${code}`;
        resolve(code === 0 ? { ok: true } : { ok: false, reason: `docker info: ${firstLine}` });
      });
    },
  );
  if (cli.ok || !("noCli" in cli)) return cli;

  // No docker CLI: an engine may still be reachable (DOCKER_HOST, a socket): ask testcontainers.
  const hint =
    process.env.DOCKER_HOST ||
    existsSync("/var/run/docker.sock") ||
    process.env.TESTCONTAINERS_HOST_OVERRIDE;
  if (!hint)
    return {
      ok: false,
      reason: "docker CLI not found, DOCKER_HOST not set, no /var/run/docker.sock",
    };
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no answer within 10s")), 10_000);
      timer.unref();
    });
    try {
      await Promise.race([getContainerRuntimeClient(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return { ok: true };
  } catch (e) {
    return {
      ok: false,
      reason: `docker CLI not found; testcontainers runtime detection: ${errorText(e)}`,
    };
  }
}

async function startContainer(): Promise<S3Server> {
  const { MinioContainer } = await import("@testcontainers/minio");
  const container = await new MinioContainer(MINIO_IMAGE)
    .withUsername(TEST_ACCESS_KEY_ID)
    .withPassword(TEST_SECRET_ACCESS_KEY)
    .withEnvironment({
      MINIO_BROWSER: "off",
      MINIO_UPDATE: "off",
      MINIO_KMS_SECRET_KEY: TEST_KMS_SECRET_KEY,
    })
    .start();
  const endpoint = container.getConnectionUrl();
  let stopped = false;
  return {
    kind: "testcontainers",
    endpoint,
    accessKeyId: TEST_ACCESS_KEY_ID,
    secretAccessKey: TEST_SECRET_ACCESS_KEY,
    region: "us-east-1",
    description: `testcontainers (${MINIO_IMAGE} at ${endpoint})`,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await container.stop();
    },
  };
}

function noServer(tried: string[]): Error {
  return new Error(
    [
      "dsfetch tests need a real S3 server and could not get one. Tried, in order:",
      ...tried.map((t) => `  - ${t}`),
      "Any one of these fixes it:",
      `  - install Go (https://go.dev/dl/; found on PATH or at /usr/local/go/bin/go): the tests then ` +
        `build ${MINIO_MODULE}@${MINIO_VERSION} once into ${minioBinaryPath()}`,
      "  - start a Docker engine: the tests then run a MinIO container via testcontainers",
      "  - point them at an S3-compatible server: DSFETCH_TEST_S3_ENDPOINT=http://host:port plus " +
        "DSFETCH_TEST_S3_ACCESS_KEY_ID and DSFETCH_TEST_S3_SECRET_ACCESS_KEY",
      `(Go was looked for in: ${goSearchDescription()})`,
    ].join("\n"),
  );
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
