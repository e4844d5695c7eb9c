/**
 * `dsfetch sidecar`: for multi-worker jobs. Serves /healthz at once, stages every dataset,
 * then says ready (/readyz 200, the ready file) and keeps the datasets marked in use until
 * SIGTERM. /metrics is Prometheus text. With --json, one JSON log line per event on stdout.
 */
import { once } from "node:events";
import type { Server } from "node:http";
import { createRequire } from "node:module";
import { releaseLeases } from "../../agent/leases.ts";
import { StageMetrics } from "../../agent/metrics.ts";
import { prepareReadyFile, removeReadyFile, writeReadyFile } from "../../agent/ready-file.ts";
import { resolveTuning } from "../../config/tuning.ts";
import { DsfetchError, type ErrorCode, toDsfetchError } from "../../errors.ts";
import type { DsfetchEvent } from "../../events.ts";
import { exitCodeOfStage, failuresOf, type StageResult, stage } from "../../stage/stage.ts";
import type { ParsedArgs } from "../args.ts";
import type { CommandContext } from "../context.ts";
import { stopMainThreadWatchdog } from "../main-thread-watchdog.ts";
import { ProgressView } from "../progress-view.ts";
import { plural, renderError } from "../render.ts";

// Not `import … from "node:http"`: an ES import of node:http reads every export, and one of
// them loads Node's fetch implementation (undici): ~50 ms of start-up, paid by every command
// once the commands share one bundle (scripts/bundle.ts hoists the import). The CommonJS
// module, required, has the same functions.
const { createServer } = createRequire(import.meta.url)("node:http") as typeof import("node:http");

export const DEFAULT_LISTEN = "127.0.0.1:8700";

type State =
  | { phase: "staging" }
  | { phase: "ready" }
  | { phase: "failed"; reason: string; code: ErrorCode }
  | { phase: "stopping" };

/**
 * A sidecar that could not even read its datasets (a config error, a bad flag value): its
 * ready file says so, replacing one an earlier sidecar left (a restarted container on the
 * same emptyDir: a stale "ready" sent workers on, or they waited their whole timeout:
 * review, 2026-12-06). Best effort: the error itself is what the sidecar reports.
 */
export async function sidecarFailedEarly(args: ParsedArgs, error: unknown): Promise<void> {
  if (args.readyFile === undefined) return;
  const failure = toDsfetchError(error);
  await writeReadyFile(args.readyFile, {
    ready: false,
    pid: process.pid,
    at: new Date().toISOString(),
    code: failure.code,
    failed: `the sidecar failed: ${failure.message}`,
  }).catch(() => {});
}

export async function sidecarCommand(context: CommandContext): Promise<number> {
  const { args, settings, datasets, out, err, env, signal } = context;
  const metrics = new StageMetrics();
  let state: State = { phase: "staging" };
  const log = jsonLog(out);
  const view = new ProgressView(err, context.stderrIsTty);
  const onEvent = (event: DsfetchEvent) => {
    metrics.handle(event);
    if (args.json) log({ level: event.type === "warning" ? "warn" : "info", ...event });
    else view.handle(event);
  };

  const server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    if (path === "/healthz") return reply(response, 200, "ok\n");
    if (path === "/readyz") {
      if (state.phase === "ready") return reply(response, 200, "ready\n");
      // A failure's second line names its error code: `dsfetch wait --url` ends with it at
      // once (README "In a job").
      return reply(
        response,
        503,
        state.phase === "failed"
          ? `failed: ${state.reason}\ncode: ${state.code}\n`
          : `${state.phase}\n`,
      );
    }
    if (path === "/metrics") {
      return reply(response, 200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
    }
    reply(response, 404, "not found: try /healthz, /readyz or /metrics\n");
  });
  if (args.readyFile !== undefined) await prepareReadyFile(args.readyFile);
  /** The ready file says how it ended (ready, or the datasets that failed): written once. */
  let told = false;
  try {
    const address = await listen(server, args.listen ?? DEFAULT_LISTEN);
    if (args.json) log({ level: "info", type: "listening", address });
    else err(`sidecar: serving /healthz, /readyz and /metrics on http://${address}\n`);
    try {
      const result = await stage(datasets, settings, {
        onEvent,
        signal,
        tuning: resolveTuning(env),
        mount: args.mountFlag ?? true,
        lease: true,
        verifyContent: args.verify,
      });
      try {
        return await holdStaged(result);
      } finally {
        await releaseLeases(result.leases);
      }
    } finally {
      metrics.ready = false;
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  } catch (error) {
    // Failed before any dataset's outcome (its port taken, a bad DSFETCH_* setting, an
    // unexpected error): said in the ready file too, or workers waiting on it waited their
    // whole timeout and ended with WAIT_TIMEOUT, not this error (review, 2026-12-06).
    if (!told) await sidecarFailedEarly(args, error);
    throw error;
  }

  /** Reports the staging, then holds the datasets (their leases) until SIGTERM. */
  async function holdStaged(result: StageResult): Promise<number> {
    view.close();
    const failed = failuresOf(result);
    if (failed.length > 0) {
      for (const outcome of failed) {
        metrics.recordFailure(outcome.name, outcome.error.code);
        if (args.json)
          log({
            level: "error",
            type: "failed",
            dataset: outcome.name,
            error: outcome.error.toJSON(),
          });
        else err(renderError(outcome.error));
      }
      told = true;
      const first = failed[0]?.error;
      // The message names its dataset already ("x: x: s3://…" before: review).
      const failedText = `${failed.length} of ${result.datasets.length} ${plural(result.datasets.length, "dataset")} could not be staged${first === undefined ? "" : ` (${first.message.startsWith(`${failed[0]?.name}: `) ? first.message : `${failed[0]?.name}: ${first.message}`})`}`;
      if (args.readyFile !== undefined) {
        // Workers waiting on the file stop now, with this error, rather than at their timeout.
        await writeReadyFile(args.readyFile, {
          ready: false,
          pid: process.pid,
          at: new Date().toISOString(),
          code: first?.code ?? "INTERNAL",
          failed: failedText,
        }).catch(() => {});
      }
      // After the ready file: /readyz saying "failed" means the file says so too, for a
      // `wait` given both (wait.ts).
      state = {
        phase: "failed",
        // As the ready file: `wait --url` said "1 dataset could not be staged", naming none
        // (exploratory tester, 2026-12-08).
        reason: failedText.replace(/\s+/g, " "),
        code: first?.code ?? "INTERNAL",
      };
      if (args.holdOnFailure) {
        // A native sidecar (restartPolicy Always) that exits is started again, and stages
        // again, for good: the pod never fails and a broken dataset is downloaded every few
        // minutes (review, 2026-12-06). It stays up saying why (/readyz, the ready file); the
        // pod's `dsfetch wait` init container fails with this error, and with it the pod.
        stopMainThreadWatchdog();
        if (args.json) log({ level: "info", type: "holding-failure" });
        else
          err(
            "sidecar: staging failed: holding the failure (/readyz, the ready file) until SIGTERM\n",
          );
        if (!signal.aborted) await once(signal, "abort");
        state = { phase: "stopping" };
      }
      return exitCodeOfStage(result);
    }
    // Staged: from here the sidecar holds the datasets for the job's whole life, and a stuck
    // main thread must not end it then (its leases keep prune away from data in use).
    stopMainThreadWatchdog();
    told = true;
    try {
      if (args.readyFile !== undefined) {
        await writeReadyFile(args.readyFile, {
          ready: true,
          pid: process.pid,
          at: new Date().toISOString(),
          datasets: result.datasets.flatMap((o) =>
            o.ok
              ? [
                  {
                    name: o.name,
                    path: o.path,
                    mount: o.mount,
                    // Staged from its copy without the store (fetch --json says it too).
                    ...(o.storeUnreachable === undefined
                      ? {}
                      : { storeUnreachable: o.storeUnreachable }),
                  },
                ]
              : [],
          ),
        });
      }
      state = { phase: "ready" };
      metrics.ready = true;
      // The datasets used from their copy, the store not reached (exploratory review,
      // 2026-12-07: only fetch --json and plan said so).
      const offline = result.datasets.flatMap((o) =>
        o.ok && o.storeUnreachable !== undefined
          ? [{ name: o.name, storeUnreachable: o.storeUnreachable }]
          : [],
      );
      if (args.json) {
        log({
          level: "info",
          type: "ready",
          datasets: result.datasets.length,
          ...(offline.length === 0 ? {} : { usedOffline: offline }),
        });
      } else
        err(
          `sidecar: ready: ${result.datasets.length} ${plural(result.datasets.length, "dataset")} staged; holding ${result.datasets.length === 1 ? "it" : "them"} in use until SIGTERM\n`,
        );
      if (!signal.aborted) await once(signal, "abort");
      state = { phase: "stopping" };
      return 0;
    } finally {
      if (args.readyFile !== undefined) await removeReadyFile(args.readyFile).catch(() => {});
    }
  }
}

function reply(
  response: import("node:http").ServerResponse,
  status: number,
  body: string,
  type = "text/plain; charset=utf-8",
): void {
  response.writeHead(status, { "content-type": type, "cache-control": "no-store" });
  response.end(body);
}

async function listen(server: Server, text: string): Promise<string> {
  const match = /^(.*):(\d{1,5})$/.exec(text);
  const host = match?.[1]?.replace(/^\[|\]$/g, "");
  const port = Number(match?.[2]);
  if (match === null || host === undefined || port > 65535) {
    throw new DsfetchError("USAGE", `--listen: ${JSON.stringify(text)} is not host:port`, {
      hint: "e.g. --listen :8700 (every address, IPv6 and IPv4), 0.0.0.0:8700 (every IPv4 address) or 127.0.0.1:8700",
    });
  }
  // ":8700": every address, IPv6 too. 0.0.0.0 is IPv4 only, and on an IPv6-only cluster
  // the kubelet's probes of the pod's address never reached the sidecar (review, 2026-12-06).
  if (host === "") server.listen(port);
  else server.listen(port, host);
  try {
    await once(server, "listening");
  } catch (error) {
    throw new DsfetchError("USAGE", `--listen ${text}: ${(error as Error).message}`, {
      hint: "choose a free port",
      cause: error,
    });
  }
  const address = server.address();
  if (typeof address !== "object" || address === null) return text;
  const shown = host === "" ? address.address : host;
  return `${shown.includes(":") ? `[${shown}]` : shown}:${address.port}`;
}

function jsonLog(out: (text: string) => void): (record: Record<string, unknown>) => void {
  return (record) => out(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
}
