/**
 * The sidecar's ready file: cleared before staging, written atomically when every dataset is
 * staged (or saying why staging failed), removed at shutdown.
 */
import { randomBytes } from "node:crypto";
import { readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { DsfetchError, type ErrorCode, EXIT_CODES } from "../errors.ts";
import { isProcessAlive } from "../volumes/cleanup.ts";
import { hostLabel } from "../volumes/host-label.ts";

export interface ReadyInfo {
  readonly ready: true;
  readonly pid: number;
  readonly at: string;
  /** `mount`: null with --no-mount (no link made). */
  readonly datasets: ReadonlyArray<{
    name: string;
    path: string;
    mount: string | null;
    /** Used from its staged copy: the store could not be reached (this error). */
    storeUnreachable?: string;
  }>;
}

/**
 * Written when staging failed: `wait` stops at once with the sidecar's error while that
 * sidecar runs (or cannot be looked up and the file appeared while it waited); one left by a
 * sidecar that is gone may be an earlier run's, and is final only after a grace (wait.ts).
 */
export interface FailedInfo {
  readonly ready: false;
  readonly pid: number;
  readonly at: string;
  readonly code: ErrorCode;
  readonly failed: string;
}

/** What a ready file says. */
export type ReadyFileState =
  | { readonly state: "ready" }
  | { readonly state: "failed"; readonly code: ErrorCode; readonly reason: string }
  | {
      readonly state: "absent";
      /**
       * Why a file that is there does not count (review, 2026-12-05: `wait` waited until its
       * timeout on a directory, on garbage, or on a dead sidecar's "ready", and never said
       * why). Undefined when there is no file yet.
       */
      readonly why?: string;
    };

export async function writeReadyFile(path: string, info: ReadyInfo | FailedInfo): Promise<void> {
  // Its directory is not made (prepareReadyFile says why): a sidecar that failed before
  // staging made a mistyped path's directories to say so there (README audit, 2026-12-07).
  const temporary = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  // The host label (host name, PID namespace, boot): where it is the reader's, `pid` can be
  // looked up (readReadyFile).
  const written = { ...info, host: hostLabel() };
  await writeFile(temporary, `${JSON.stringify(written, null, 2)}\n`);
  await rename(temporary, path);
}

/**
 * Before staging: removes a ready file an earlier sidecar left (killed before its clean-up,
 * a restarted container on the same emptyDir), which told workers to go on before anything
 * was staged (review, 2026-12-05); and proves the path writable now, not after hours of
 * staging (a bad path was found only then, and reported as a bug in dsfetch).
 */
export async function prepareReadyFile(path: string): Promise<void> {
  // "rm returned EISDIR (is a directory) /tmp" said nothing useful (review, 2026-12-05).
  if ((await stat(path).catch(() => undefined))?.isDirectory() === true) {
    throw new DsfetchError("USAGE", `--ready-file ${path}: is a directory`, {
      hint: "give the path of a file to write, in a directory the workers can read (e.g. /shared/ready.json)",
    });
  }
  // A directory that is not there is a mistake, not one to make: a mistyped path was made
  // and written, and the workers' `wait --ready-file <the right path>` waited for their whole
  // timeout (README audit, 2026-12-07). The README said such a path was refused; it was not.
  const directory = dirname(path);
  const parent = await stat(directory).catch((error: NodeJS.ErrnoException) => error);
  if (parent instanceof Error && parent.code === "ENOENT") {
    throw new DsfetchError(
      "USAGE",
      `--ready-file ${path}: its directory ${directory} does not exist`,
      {
        hint: `create it (mkdir -p ${directory}) or fix the path: the workers' \`dsfetch wait --ready-file\` must name the same file, in a directory they can read too (e.g. an emptyDir volume shared with them)`,
      },
    );
  }
  try {
    await rm(path, { force: true });
    const probe = `${path}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(probe, "");
    await rm(probe, { force: true });
  } catch (error) {
    throw new DsfetchError(
      "USAGE",
      `--ready-file ${path}: cannot be written there (${(error as Error).message})`,
      {
        hint: "give a file path in a writable directory that the workers can read too (e.g. an emptyDir volume shared with them)",
        cause: error,
      },
    );
  }
}

export async function removeReadyFile(path: string): Promise<void> {
  await rm(path, { force: true });
}

/**
 * Who wrote a failed file, as far as this process can tell: `alive` (this host label, its pid
 * running: e.g. `sidecar --hold-on-failure`), `gone` (this host label, its pid ended), or
 * `unknown` (another host label, or no host or pid recorded: it cannot be looked up).
 */
export type WriterStatus = "alive" | "gone" | "unknown";

/** A look at the ready file: what it says, and what `wait` needs to tell one file from the next. */
export interface ReadyFileLook {
  readonly state: ReadyFileState;
  /**
   * What was there: the file's text, "" when there was no file; undefined when it could not
   * be read (that says nothing of whether it changed).
   */
  readonly content: string | undefined;
  /** Of a failed file: its writer, and what it recorded (pid, time written). */
  readonly writer?: {
    readonly status: WriterStatus;
    readonly pid: number | undefined;
    readonly at: string | undefined;
  };
}

/** What the file says now; absent until it was renamed in whole (never half-written). */
export async function readReadyFile(path: string): Promise<ReadyFileState> {
  return (await lookAtReadyFile(path)).state;
}

/**
 * readReadyFile, with the file's text and a failed file's writer: a failed file whose sidecar
 * is gone, or cannot be looked up, may be an earlier run's (a job restarted on the same
 * shared directory), and `wait` gives a new sidecar time to replace it (review, 2026-12-06).
 */
export async function lookAtReadyFile(path: string): Promise<ReadyFileLook> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { state: { state: "absent" }, content: "" };
    return {
      state: {
        state: "absent",
        why:
          code === "EISDIR"
            ? "is a directory, not a ready file"
            : `cannot be read (${code ?? (error as Error).message})`,
      },
      content: undefined,
    };
  }
  return { ...parseReadyFile(text), content: text };
}

function parseReadyFile(text: string): Omit<ReadyFileLook, "content"> {
  let info: Partial<ReadyInfo> | Partial<FailedInfo>;
  try {
    info = JSON.parse(text) as Partial<ReadyInfo> | Partial<FailedInfo>;
  } catch {
    return { state: { state: "absent", why: "is not a ready file (not JSON)" } };
  }
  if (typeof info !== "object" || info === null) {
    return { state: { state: "absent", why: "is not a ready file (not a JSON object)" } };
  }
  if (info.ready === true) {
    // A sidecar killed (-9, OOM) left its file saying ready, and its leases went with it: a
    // worker went on while prune could remove the datasets (review, 2026-12-05). Where its pid
    // can be looked up (same host and PID namespace) and is gone, it is not ready: a restarted
    // sidecar removes the file and writes its own.
    const { host, pid } = info as { host?: unknown; pid?: unknown };
    if (host === hostLabel() && typeof pid === "number" && pid > 0 && !isProcessAlive(pid)) {
      return {
        state: {
          state: "absent",
          why: `says ready, but its sidecar (pid ${pid}) is gone: waiting for a new one to stage the datasets`,
        },
      };
    }
    return { state: { state: "ready" } };
  }
  if (info.ready === false && "failed" in info && typeof info.failed === "string") {
    const code = typeof info.code === "string" && info.code in EXIT_CODES ? info.code : "INTERNAL";
    const { host, pid, at } = info as { host?: unknown; pid?: unknown; at?: unknown };
    const known = typeof pid === "number" && pid > 0 ? pid : undefined;
    const status: WriterStatus =
      host !== hostLabel() || known === undefined
        ? "unknown"
        : isProcessAlive(known)
          ? "alive"
          : "gone";
    return {
      state: { state: "failed", code, reason: info.failed },
      writer: { status, pid: known, at: typeof at === "string" ? at : undefined },
    };
  }
  return { state: { state: "absent", why: 'is not a ready file (no "ready" field)' } };
}
