/**
 * `dsfetch wait`: blocks until a sidecar says ready — its ready file, or its /readyz URL —
 * or gives up after --timeout (exit 9). A ready file saying that the sidecar failed ends the
 * wait at once, with the sidecar's error. For workers that share the pod.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { readReadyFile } from "../../agent/ready-file.ts";
import { DURATION_FORMS, parseDuration } from "../../config/duration.ts";
import { DsfetchError } from "../../errors.ts";
import type { ParsedArgs } from "../args.ts";

const POLL_MS = 250;
const REPORT_MS = 30_000;

export async function waitCommand(
  args: ParsedArgs,
  err: (text: string) => void,
  signal: AbortSignal,
): Promise<number> {
  if (args.readyFile === undefined && args.url === undefined) {
    throw new DsfetchError("USAGE", "wait needs --ready-file <path> or --url <url>", {
      hint: "e.g. dsfetch wait --url http://127.0.0.1:8700/readyz --timeout 30m",
    });
  }
  const timeout = parseDuration(args.timeout ?? "10m");
  if (!timeout.ok)
    throw new DsfetchError("USAGE", `--timeout: ${timeout.reason}`, {
      hint: `accepted: ${DURATION_FORMS}`,
    });
  if (args.url !== undefined && !/^https?:\/\//.test(args.url)) {
    throw new DsfetchError("USAGE", `--url: ${JSON.stringify(args.url)} is not an http(s) URL`, {
      hint: "e.g. --url http://127.0.0.1:8700/readyz",
    });
  }
  const what = [args.readyFile, args.url].filter((item) => item !== undefined).join(" or ");
  const started = Date.now();
  let reported = started;
  err(`wait: waiting for ${what}\n`);
  /** Why the ready file there does not count, said once each time it changes. */
  let why: string | undefined;
  for (;;) {
    if (args.readyFile !== undefined) {
      const file = await readReadyFile(args.readyFile);
      if (file.state === "ready") break;
      const now = file.state === "absent" ? file.why : undefined;
      if (now !== undefined && now !== why) err(`wait: ${args.readyFile} ${now}\n`);
      why = now;
      if (file.state === "failed") {
        throw new DsfetchError(file.code, `wait: the sidecar failed: ${file.reason}`, {
          hint: `its ready file ${args.readyFile} says so; look at the sidecar's log for each dataset's error`,
        });
      }
    }
    if (args.url !== undefined && (await urlSaysReady(args.url))) break;
    const waited = Date.now() - started;
    if (waited >= timeout.ms) {
      throw new DsfetchError(
        "WAIT_TIMEOUT",
        `wait: ${what} did not say ready within ${args.timeout ?? "10m"}${why === undefined ? "" : ` (${args.readyFile} ${why})`}`,
        {
          hint: "look at the sidecar's log; raise --timeout for large datasets",
        },
      );
    }
    if (Date.now() - reported >= REPORT_MS) {
      reported = Date.now();
      err(`wait: still waiting for ${what} (${Math.round(waited / 1000)} s)\n`);
    }
    try {
      await sleep(POLL_MS, undefined, { signal });
    } catch (error) {
      // SIGINT/SIGTERM: an interrupt (130), not a bug in dsfetch (review, 2026-12-05).
      if (!signal.aborted) throw error;
      throw new DsfetchError("INTERRUPTED", `wait: interrupted while waiting for ${what}`, {
        cause: error,
      });
    }
  }
  err(`wait: ready after ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}

async function urlSaysReady(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}
