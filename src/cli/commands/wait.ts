/**
 * `dsfetch wait`: blocks until a sidecar says ready — its ready file, or its /readyz URL —
 * or gives up after --timeout (exit 9). A ready file saying that the sidecar failed ends the
 * wait with the sidecar's error: at once when that sidecar runs, or when the file was written
 * while this wait ran; after STALE_FAILURE_GRACE_MS when it is gone or cannot be looked up
 * and the file was there from the start (an earlier run's, maybe). For workers that share the
 * pod.
 *
 * Each read of the ready file runs under a bound (review: on storage that hung — NFS whose
 * server went away; a FIFO stands in for it — the read never came back, so --timeout was
 * never looked at and SIGTERM was never answered: still running after 10 minutes). A read
 * that has not answered is waited for again at the next poll (never a second one beside it:
 * each would hold a thread of libuv's pool), and given up on at the timeout or an interrupt:
 * noted as stuck (util/stuck-threads.ts), so that the CLI ends itself after its answer
 * (cli/finish.ts) instead of hanging in exit.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { lookAtReadyFile, type ReadyFileLook } from "../../agent/ready-file.ts";
import { DURATION_FORMS, parseDuration } from "../../config/duration.ts";
import { DsfetchError, type ErrorCode, EXIT_CODES } from "../../errors.ts";
import { noteStuckThread } from "../../util/stuck-threads.ts";
import type { ParsedArgs } from "../args.ts";

const POLL_MS = 250;
const REPORT_MS = 30_000;
/** How long one read of the ready file is waited for before `wait` says it did not answer. */
const READ_BOUND_MS = 5_000;
/**
 * How long a read is given in all, even when the timeout comes first: a read started at the
 * end of the last poll is not one that did not answer (found testing: given 0 ms, a healthy
 * read was given up on as stuck, and the CLI ended with SIGKILL, as it did until 2026-12-07).
 */
const READ_GRACE_MS = 1_000;
/**
 * How long a failed ready file is given to be replaced when its sidecar is gone (same host
 * label, pid ended) or cannot be looked up (another host or PID namespace), and it was there
 * when this wait first looked: a job restarted on the same shared directory (docker compose,
 * Slurm, a restarted pod on the same emptyDir) had its workers' `wait` read the previous
 * sidecar's failure before the new sidecar removed it, and fail at once a job that would have
 * succeeded (review, 2026-12-06). A new sidecar removes the file first thing (prepareReadyFile:
 * within a few seconds of its start), so the containers of one job starting apart is what this
 * must cover; a real failure that was already there is reported this much later. Less when
 * less of --timeout is left. Kept well under 30 s: a worker started after its sidecar failed
 * and exited (no --hold-on-failure) pays it in full (test/agent/agent-review.test.ts bounds
 * such a wait at 30 s).
 */
const STALE_FAILURE_GRACE_MS = 15_000;

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
  // With both, both must say ready (the loop below): "and", not "or" (README audit, 2026-12-07).
  const what = [args.readyFile, args.url].filter((item) => item !== undefined).join(" and ");
  const started = Date.now();
  let reported = started;
  err(`wait: waiting for ${what}\n`);
  /** Why the ready file there does not count, said once each time it changes. */
  let why: string | undefined;
  /** A read of the ready file that has not answered yet, and since when. */
  let reading: { readonly answer: Promise<ReadyFileLook>; readonly since: number } | undefined;
  /**
   * What the last read found at the path (its text; "" for no file). A failed file that
   * differs from it was written while this wait ran: by this run's sidecar, final even if
   * that sidecar has exited since.
   */
  let seen: string | undefined;
  /**
   * A failed file there since this wait first looked, whose sidecar is gone or cannot be
   * looked up, given until `until` to be replaced; cleared when the file changes.
   */
  let stale:
    | {
        readonly content: string;
        readonly until: number;
        readonly error: DsfetchError;
      }
    | undefined;
  /** What the read not answered means, for the messages (undefined when there is none). */
  const unanswered = () =>
    reading === undefined
      ? undefined
      : `did not answer: reading it has had no answer from its storage for ${((Date.now() - reading.since) / 1000).toFixed(1)} s`;
  /** Before giving up with a read not answered: noted, so that the CLI does not hang in exit. */
  const abandon = () => {
    if (reading === undefined) return;
    noteStuckThread(`reading the ready file ${args.readyFile}`, reading.answer);
  };
  /**
   * An interrupt: a read started less than READ_GRACE_MS ago is given the rest of it to
   * answer first. Found when the tests' CLI started faster: a SIGTERM just after "waiting for"
   * met the first read in flight, which was noted as stuck, and the CLI ended with SIGKILL (then)
   * ("gave up on work stuck in system calls") instead of exit 130.
   */
  const interrupted = async (cause?: unknown) => {
    if (reading !== undefined) {
      const pending = reading;
      const outcome = await within(
        pending.answer,
        Math.max(0, READ_GRACE_MS - (Date.now() - pending.since)),
        new AbortController().signal,
      ).catch(() => "answered" as const);
      if (outcome !== "no answer" && reading === pending) reading = undefined;
    }
    const still = unanswered();
    abandon();
    return new DsfetchError(
      "INTERRUPTED",
      `wait: interrupted while waiting for ${what}${still === undefined ? "" : ` (${args.readyFile} ${still})`}`,
      cause === undefined ? {} : { cause },
    );
  };
  /** What --url said last that was said on stderr (said once each time it changes). */
  let urlSaid: string | undefined;
  for (;;) {
    // The sidecar's own answer, asked first: with both --url and --ready-file it decides
    // (a ready file may be an earlier run's, kept on the same emptyDir: a container
    // restarted in its pod; and it tells a failure held by a running sidecar from one left
    // by a gone one, where the PID namespaces differ: review, 2026-12-06).
    const url = args.url === undefined ? undefined : await urlState(args.url, signal);
    if (url?.state === "ready" && args.readyFile === undefined) break;
    if (url?.state === "failed" && args.readyFile === undefined) {
      throw new DsfetchError(url.code, `wait: the sidecar failed: ${url.reason}`, {
        hint: `${args.url} says so; look at the sidecar's log for each dataset's error`,
      });
    }
    // Interrupted during the /readyz request: no new read of the ready file (on hung storage
    // it would be one more call to give up on; review, 2026-12-07).
    if (signal.aborted) throw await interrupted();
    if (args.readyFile !== undefined) {
      const path = args.readyFile;
      const pending = reading ?? { answer: lookAtReadyFile(path), since: Date.now() };
      reading = pending;
      const left = timeout.ms - (Date.now() - started);
      const grace = READ_GRACE_MS - (Date.now() - pending.since);
      const outcome = await within(
        pending.answer,
        Math.max(0, Math.min(Math.max(left, grace), READ_BOUND_MS)),
        signal,
      );
      if (outcome === "aborted") throw await interrupted();
      if (outcome === "no answer") {
        if (url?.state === "failed") {
          throw new DsfetchError(url.code, `wait: the sidecar failed: ${url.reason}`, {
            hint: `${args.url} says so; look at the sidecar's log for each dataset's error`,
          });
        }
        // Said once; waited for again at the next poll, until the timeout.
        const now = `did not answer within ${READ_BOUND_MS / 1000} s (its storage may be hung): still waiting for it`;
        if (now !== why && Date.now() - started < timeout.ms) err(`wait: ${path} ${now}\n`);
        why = now;
      } else {
        reading = undefined;
        const look = outcome.state;
        const file = look.state;
        if (file.state === "ready" && (url === undefined || url.state === "ready")) break;
        const staging = url?.state === "other" && url.text === "staging";
        const now =
          file.state === "absent"
            ? url?.state === "ready"
              ? `${file.why ?? "is not there"}, but ${args.url} says ready: waiting for the file`
              : file.why
            : file.state === "ready" && url !== undefined
              ? `says ready, but ${args.url} ${describeUrl(url)}: it may be an earlier run's file; waiting for ${args.url}`
              : file.state === "failed" && staging && url?.state === "other"
                ? `says the sidecar failed, but ${args.url} says ${url.text}: it is an earlier run's file; waiting for ${args.url}`
                : undefined;
        if (url?.state === "failed" && file.state !== "failed") {
          // The sidecar holds a failure its file does not say (it could not write it).
          throw new DsfetchError(url.code, `wait: the sidecar failed: ${url.reason}`, {
            hint: `${args.url} says so; look at the sidecar's log for each dataset's error`,
          });
        }
        if (now !== undefined && now !== why) err(`wait: ${path} ${now}\n`);
        why = now;
        if (file.state === "failed") {
          const content = look.content ?? "";
          const writer = look.writer;
          // Final when its sidecar runs (--hold-on-failure holds the failure until SIGTERM;
          // across PID namespaces its /readyz says so), or when something else was there
          // before in this wait: this run's sidecar wrote it.
          if (
            writer?.status === "alive" ||
            url?.state === "failed" ||
            (seen !== undefined && seen !== content)
          ) {
            throw new DsfetchError(file.code, `wait: the sidecar failed: ${file.reason}`, {
              hint: `its ready file ${path} says so; look at the sidecar's log for each dataset's error`,
            });
          }
          if (staging) {
            // A sidecar answers and has not failed: the file is an earlier run's (said above).
            stale = undefined;
          } else if (stale?.content !== content) {
            const ms = Math.max(
              0,
              Math.min(STALE_FAILURE_GRACE_MS, timeout.ms - (Date.now() - started)),
            );
            const whose = whoseFailure(writer);
            const seconds = Math.ceil(ms / 1000);
            err(
              `wait: ${path} says the sidecar failed, but ${whose}: it may be an earlier run's; waiting up to ${seconds} s for a new sidecar to replace it\n`,
            );
            stale = {
              content,
              until: Date.now() + ms,
              error: new DsfetchError(
                file.code,
                `wait: the sidecar failed: ${file.reason} (said by a sidecar that is no longer known to run: ${whose}; no new sidecar replaced the file within ${seconds} s)`,
                {
                  hint: `its ready file ${path} says so; if that was an earlier run's sidecar, this run's has not started or uses another --ready-file: look at its log; else look at the sidecar's log for each dataset's error`,
                },
              ),
            };
          }
          if (stale !== undefined && Date.now() >= stale.until) throw stale.error;
        } else {
          stale = undefined;
        }
        if (look.content !== undefined) seen = look.content;
      }
    }
    if (args.readyFile === undefined && url !== undefined) {
      const said = describeUrl(url);
      if (said !== urlSaid) err(`wait: ${args.url} ${said}\n`);
      urlSaid = said;
    }
    if (signal.aborted) throw await interrupted();
    const waited = Date.now() - started;
    if (waited >= timeout.ms) {
      const still = unanswered();
      // The last look found an earlier failure still there: its error, not WAIT_TIMEOUT.
      if (still === undefined && stale !== undefined) throw stale.error;
      abandon();
      const said = still ?? why;
      throw new DsfetchError(
        "WAIT_TIMEOUT",
        `wait: ${what} did not say ready within ${args.timeout ?? "10m"}${said === undefined ? "" : ` (${args.readyFile} ${said})`}`,
        {
          hint:
            still === undefined
              ? "look at the sidecar's log; raise --timeout for large datasets"
              : "the storage holding the ready file may be hung (an NFS server or a FUSE daemon gone): look at its mount; then at the sidecar's log",
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
      throw await interrupted(error);
    }
  }
  err(`wait: ready after ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}

/** Who wrote a failed file that is not known to be final, for the messages. */
function whoseFailure(writer: ReadyFileLook["writer"]): string {
  const written = writer?.at === undefined ? "" : `, written ${writer.at}`;
  if (writer?.pid === undefined) return "it does not name its sidecar (no pid)";
  if (writer.status === "gone") return `its sidecar (pid ${writer.pid}${written}) is gone`;
  return `its sidecar (pid ${writer.pid}${written}) ran on another host or PID namespace and cannot be looked up from here`;
}

/**
 * What `work` answered within `ms`; "no answer" when the time ran out first, "aborted" when
 * `signal` was (the work goes on either way: the caller decides what becomes of it).
 */
function within<T>(
  work: Promise<T>,
  ms: number,
  signal: AbortSignal,
): Promise<{ readonly state: T } | "no answer" | "aborted"> {
  if (signal.aborted) return Promise.resolve("aborted");
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", aborted);
    };
    const aborted = () => {
      done();
      resolve("aborted");
    };
    const timer = setTimeout(() => {
      done();
      resolve("no answer");
    }, ms);
    signal.addEventListener("abort", aborted, { once: true });
    work.then(
      (state) => {
        done();
        resolve({ state });
      },
      (error: unknown) => {
        done();
        reject(error);
      },
    );
  });
}

function describeUrl(url: UrlState): string {
  if (url.state === "unreachable") return "does not answer (yet)";
  if (url.state === "failed") return `says failed: ${url.reason}`;
  if (url.state === "ready") return "says ready";
  // A wrong path (the sidecar's bare address: it answers 404 there) was waited on for the
  // whole timeout with nothing but "says HTTP 404" (exploratory review, 2026-12-07). Still
  // waited on: an ingress answers 404 until its backend is up.
  if (url.text === "HTTP 404") {
    return "says HTTP 404 (not found: a dsfetch sidecar answers on /readyz)";
  }
  return `says ${url.text}`;
}

/** What the sidecar's /readyz says. */
type UrlState =
  | { readonly state: "ready" }
  | { readonly state: "failed"; readonly reason: string; readonly code: ErrorCode }
  /** Answered, not ready, not failed (`text`: its first line, e.g. "staging", "503"). */
  | { readonly state: "other"; readonly text: string }
  | { readonly state: "unreachable" };

/**
 * Asks the readiness URL once. A dsfetch sidecar answers 200 when ready, and 503 with
 * `failed: <reason>` and `code: <CODE>` lines when staging failed (sidecar.ts); anything else
 * that answers is "other", no answer within 2 s "unreachable".
 */
async function urlState(url: string, signal: AbortSignal): Promise<UrlState> {
  try {
    const response = await fetch(url, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(2_000)]),
    });
    if (response.status === 200) {
      await response.body?.cancel();
      return { state: "ready" };
    }
    const text = response.status === 503 ? (await response.text()).slice(0, 4096) : "";
    const failed = /^failed: ([^\n]*)/.exec(text);
    if (failed !== null) {
      const named = /^code: ([A-Z_]+)\s*$/m.exec(text)?.[1];
      const code = named !== undefined && named in EXIT_CODES ? (named as ErrorCode) : "INTERNAL";
      return { state: "failed", reason: failed[1] ?? "", code };
    }
    await response.body?.cancel().catch(() => {});
    const first = text.split("\n")[0]?.trim() ?? "";
    return { state: "other", text: first === "" ? `HTTP ${response.status}` : first };
  } catch {
    return { state: "unreachable" };
  }
}
