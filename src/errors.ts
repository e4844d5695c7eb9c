/**
 * The one error class of dsfetch, its stable codes, and the one table that maps codes to
 * process exit codes. Library code throws DsfetchError; only the CLI turns it into an exit.
 */

/** Stable error codes. Never rename one: scripts match on them. */
export type ErrorCode =
  | "USAGE"
  | "UNSUPPORTED"
  | "CONFIG_INVALID"
  | "NOT_FOUND"
  | "NO_SUCH_VERSION"
  | "DELETE_MARKER"
  | "ACCESS_DENIED"
  | "OBJECT_ARCHIVED"
  | "ETAG_MISMATCH"
  | "INTEGRITY"
  | "OBJECT_CHANGED"
  | "S3_ERROR"
  | "TRANSIENT"
  | "STORAGE"
  | "NO_SPACE"
  | "PATH_TAKEN"
  | "ARCHIVE_INVALID"
  | "UNSAFE_PATH"
  | "LOCK_TIMEOUT"
  | "WAIT_TIMEOUT"
  | "STALLED"
  | "INTERRUPTED"
  | "COMMAND_NOT_FOUND"
  | "COMMAND_NOT_EXECUTABLE"
  | "INTERNAL";

/** Exit code of each error code. Documented in README.md ("Exit codes"); keep them in step. */
export const EXIT_CODES: Readonly<Record<ErrorCode, number>> = Object.freeze({
  INTERNAL: 1,
  USAGE: 2,
  UNSUPPORTED: 2,
  CONFIG_INVALID: 2,
  NOT_FOUND: 3,
  NO_SUCH_VERSION: 3,
  DELETE_MARKER: 3,
  ACCESS_DENIED: 4,
  OBJECT_ARCHIVED: 4,
  ETAG_MISMATCH: 5,
  INTEGRITY: 5,
  OBJECT_CHANGED: 5,
  S3_ERROR: 6,
  TRANSIENT: 6,
  STORAGE: 7,
  NO_SPACE: 7,
  PATH_TAKEN: 7,
  ARCHIVE_INVALID: 8,
  UNSAFE_PATH: 8,
  LOCK_TIMEOUT: 9,
  WAIT_TIMEOUT: 9,
  STALLED: 10,
  INTERRUPTED: 130,
  // `run`'s command could not be started: the shell's codes (and Docker's), which a job's
  // retry logic already tells from the command's own failures (2 was argparse's too).
  COMMAND_NOT_EXECUTABLE: 126,
  COMMAND_NOT_FOUND: 127,
});

export interface DsfetchErrorOptions {
  /** Name of the dataset concerned, when there is one. */
  dataset?: string | undefined;
  /** What was expected (an ETag, a size, a form). */
  expected?: string | undefined;
  /** What was found instead. */
  found?: string | undefined;
  /** What the user can do about it. */
  hint?: string | undefined;
  /** Whether trying again may succeed. Decided in one place for S3: fetch/s3-errors.ts. */
  retryable?: boolean | undefined;
  /**
   * The object's bytes were checked against the store (ETag, checksum) before this error was
   * raised about them: it is a property of the stored object, not of this download.
   */
  objectVerified?: boolean | undefined;
  cause?: unknown;
}

export class DsfetchError extends Error {
  override readonly name = "DsfetchError";
  readonly code: ErrorCode;
  readonly dataset: string | undefined;
  readonly expected: string | undefined;
  readonly found: string | undefined;
  readonly hint: string | undefined;
  readonly retryable: boolean;
  readonly objectVerified: boolean;

  constructor(code: ErrorCode, message: string, options: DsfetchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.dataset = options.dataset;
    this.expected = options.expected;
    this.found = options.found;
    this.hint = options.hint;
    this.retryable = options.retryable ?? false;
    this.objectVerified = options.objectVerified ?? false;
  }

  /** The exit code the CLI uses for this error. */
  get exitCode(): number {
    return EXIT_CODES[this.code];
  }

  /** A plain object for `--json` output: no stack, no cause (causes may carry secrets). */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.dataset !== undefined) out.dataset = this.dataset;
    if (this.expected !== undefined) out.expected = this.expected;
    if (this.found !== undefined) out.found = this.found;
    if (this.hint !== undefined) out.hint = this.hint;
    return out;
  }
}

export function isDsfetchError(value: unknown): value is DsfetchError {
  return value instanceof DsfetchError;
}

/** Wraps anything thrown into a DsfetchError, keeping DsfetchErrors as they are. */
export function toDsfetchError(value: unknown, dataset?: string): DsfetchError {
  if (value instanceof DsfetchError) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new DsfetchError("INTERNAL", `unexpected error: ${message}`, {
    dataset,
    hint: "this is a bug in dsfetch; please report it with the command you ran",
    cause: value,
  });
}

/** Exit code for any thrown value. */
export function exitCodeOf(value: unknown): number {
  return value instanceof DsfetchError ? value.exitCode : EXIT_CODES.INTERNAL;
}
