/**
 * Worker thread of extractZipInWorker (zip-in-worker.ts): extracts a downloaded zip archive
 * with extractZip, so that the main thread stays free to notice a hang. Zip entries are
 * written with synchronous calls: on the main thread, a write to a hung NFS server froze the
 * whole process (no watchdog, no signal handling, no sidecar health endpoint) for as long as
 * the server was gone.
 *
 * Messages in: { type: "job", job, clock }, then possibly { type: "abort" }.
 * Out: { type: "done", result } or { type: "error", error } (thread-errors.ts).
 * Progress is the clock in shared memory, set to now whenever the extraction moves on (the
 * main thread reads it even while this one is blocked in a system call).
 */
import { parentPort } from "node:worker_threads";
import type { WriteMode } from "../util/write-mode.ts";
import type { ExtractLimits } from "./limits.ts";
import { toThreadError } from "./thread-errors.ts";
import { postedResult } from "./thread-result.ts";
import { extractZip } from "./zip-extract.ts";

export interface ZipJob {
  /** The downloaded archive. */
  readonly zipPath: string;
  readonly destination: string;
  readonly limits: ExtractLimits;
  readonly dataset: string;
  /** How files are written (util/write-mode.ts); default "auto". */
  readonly writes?: WriteMode | undefined;
}

export type ToZipWorker =
  | { type: "job"; job: ZipJob; clock: SharedArrayBuffer }
  | { type: "abort" };

const port = parentPort;
if (port === null) throw new Error("zip-worker must run as a worker thread");
const abort = new AbortController();
let jobGiven: ((message: Extract<ToZipWorker, { type: "job" }>) => void) | undefined;
const jobMessage = new Promise<Extract<ToZipWorker, { type: "job" }>>((resolve) => {
  jobGiven = resolve;
});
port.on("message", (message: ToZipWorker) => {
  if (message.type === "job") jobGiven?.(message);
  else abort.abort(new Error("extraction aborted"));
});

const { job, clock: clockBuffer } = await jobMessage;
const clock = new Float64Array(clockBuffer);
function touch(): void {
  clock[0] = performance.timeOrigin + performance.now();
}
try {
  touch();
  const result = await extractZip(job.zipPath, job.destination, job.limits, job.dataset, {
    writes: job.writes,
    signal: abort.signal,
    onProgress: touch,
  });
  touch();
  const posted = postedResult(result);
  port.postMessage({ type: "done", result: posted.result }, posted.transfer);
} catch (error) {
  touch();
  port.postMessage({ type: "error", error: toThreadError(error, job.dataset) });
}
