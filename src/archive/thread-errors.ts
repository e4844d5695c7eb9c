/**
 * A DsfetchError across a thread boundary (an extraction thread's answer): its fields as a
 * plain object (what structured clone keeps), and the error again on the other side.
 */
import {
  DsfetchError,
  type DsfetchErrorOptions,
  type ErrorCode,
  toDsfetchError,
} from "../errors.ts";

export type ThreadError = {
  code: ErrorCode;
  message: string;
  /** A bug's stack, for its report (a DsfetchError's own stack says nothing useful). */
  detail?: string | undefined;
  /** The underlying error (a failed write's errno), for programs that look at `cause`. */
  cause?: { message: string; code?: string | undefined } | undefined;
} & Pick<
  DsfetchErrorOptions,
  "dataset" | "expected" | "found" | "hint" | "retryable" | "objectVerified"
>;

export function toThreadError(error: unknown, dataset: string): ThreadError {
  const failure = toDsfetchError(error, dataset);
  return {
    code: failure.code,
    message: failure.message,
    dataset: failure.dataset,
    expected: failure.expected,
    found: failure.found,
    hint: failure.hint,
    retryable: failure.retryable,
    objectVerified: failure.objectVerified,
    detail: failure.code === "INTERNAL" && error instanceof Error ? error.stack : undefined,
    cause:
      failure.cause instanceof Error
        ? {
            message: failure.cause.message,
            code: (failure.cause as NodeJS.ErrnoException).code,
          }
        : undefined,
  };
}

export function fromThreadError(wire: ThreadError): DsfetchError {
  const { code, message, detail, cause: underlying, ...options } = wire;
  // The errno code kept with the stack: a system error the thread did not wrap (ENOSPC on an
  // open) is told as the storage's by the staging (stage-dataset.ts systemErrorIn).
  const cause =
    detail !== undefined
      ? Object.assign(new Error(underlying?.message ?? detail), {
          code: underlying?.code,
          stack: detail,
        })
      : underlying !== undefined
        ? Object.assign(new Error(underlying.message), { code: underlying.code })
        : undefined;
  return new DsfetchError(code, message, { ...options, cause });
}
