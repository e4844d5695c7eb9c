/**
 * Every remote call goes through this one retry wrapper, with one classifier
 * (s3-errors.ts): transient failures are retried with jittered exponential backoff,
 * permanent ones fail at once. A store's `Retry-After` lengthens the wait, within
 * MAX_RETRY_AFTER_MS; a malformed answer that comes back identical is not retried again.
 */
import pRetry from "p-retry";
import { answerHeaderOf, isRetryableS3Error, malformedAnswerOf } from "./s3-errors.ts";

export interface RetryOptions {
  /** Retries after the first attempt. */
  retries?: number;
  /** First backoff delay in ms; doubles each retry, jittered ×1-2, capped at maxDelayMs. */
  minDelayMs?: number;
  maxDelayMs?: number;
  signal?: AbortSignal | undefined;
  /** Called before each retry with the failure and the attempt that failed. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /**
   * Whether a failed attempt uses up one of `retries` (default: each one does). One that
   * does not is tried again at once, without a backoff delay.
   */
  consumesRetry?: (error: unknown) => boolean;
}

export const DEFAULT_RETRIES = 6;

/**
 * The longest wait a `Retry-After` may ask for, per retry. AWS sends none on SlowDown; other
 * stores and proxies (Ceph RGW's rate limits, Cloudflare R2, a load balancer's 429) do, and
 * retrying sooner than they ask only spends the bounded attempts on more refusals (interop
 * review, 2026-12-06: it was ignored). More than this is not waited for: the backoff's own
 * longest wait (the attempts stay bounded in time as before; a wait is not progress to a
 * download's stall clock).
 */
export const MAX_RETRY_AFTER_MS = 10_000;
/**
 * A `Retry-After` longer than this is not a hint: MinIO sends a fixed `Retry-After: 120` with
 * every 503 (SlowDown, read quorum), which at face value made each retry of a blip wait the
 * cap (review of the interop fixes, 2026-12-06). Ignored: the backoff decides.
 */
const RETRY_AFTER_IGNORED_ABOVE_MS = 60_000;

/**
 * Times the same malformed answer (s3-errors.ts malformedAnswerOf: same message) may come in
 * a row before it is no longer retried: a glitch on the way (a proxy cutting a listing short)
 * gets two more tries; a store that always answers so (a listing truncated without a token,
 * on every request) failed after 6 retries, ~20 s (interop review, 2026-12-06).
 */
const SAME_MALFORMED_ANSWERS = 3;

export function withRetry<T>(
  operation: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  // Judged once per failed attempt (p-retry asks in two callbacks), in order.
  let judged: unknown;
  let retryable = false;
  let lastMalformed: string | undefined;
  let sameMalformed = 0;
  const judge = (error: unknown): boolean => {
    if (error === judged) return retryable;
    judged = error;
    retryable = isRetryableS3Error(error);
    const malformed = malformedAnswerOf(error);
    sameMalformed = malformed !== undefined && malformed === lastMalformed ? sameMalformed + 1 : 1;
    lastMalformed = malformed;
    if (malformed !== undefined && sameMalformed >= SAME_MALFORMED_ANSWERS) retryable = false;
    return retryable;
  };
  return pRetry(operation, {
    retries: options.retries ?? DEFAULT_RETRIES,
    minTimeout: options.minDelayMs ?? 200,
    maxTimeout: options.maxDelayMs ?? 10_000,
    factor: 2,
    randomize: true,
    signal: options.signal,
    shouldRetry: ({ error }) => judge(error),
    shouldConsumeRetry: ({ error }) => options.consumesRetry?.(error) ?? true,
    onFailedAttempt: async ({ error, attemptNumber, retriesLeft, retryDelay }) => {
      if (retriesLeft <= 0 || !judge(error)) return;
      // p-retry waits `retryDelay` after this: the rest of what the store asked for first.
      const extra = Math.max(0, retryAfterMs(error) - retryDelay);
      options.onRetry?.(error, attemptNumber, retryDelay + extra);
      if (extra > 0) await sleep(extra, options.signal);
    },
  });
}

/**
 * What a failure's `Retry-After` asks to wait, in ms (0 without one): seconds, or an HTTP-date
 * (RFC 9110 §10.2.3); at most MAX_RETRY_AFTER_MS. A date in the past, or a value that is
 * neither, is no wait.
 */
export function retryAfterMs(error: unknown, now: number = Date.now()): number {
  const value = answerHeaderOf(error, "retry-after")?.trim();
  if (value === undefined || value === "") return 0;
  let ms: number;
  if (/^\d+$/.test(value)) ms = Number(value) * 1000;
  else {
    const at = Date.parse(value);
    // Only the HTTP-date form (a day name first): Date.parse takes "1.5" or "2026" as dates.
    if (Number.isNaN(at) || !/^[A-Za-z]{3,9},? /.test(value)) return 0;
    ms = at - now;
  }
  if (!Number.isFinite(ms) || ms > RETRY_AFTER_IGNORED_ABOVE_MS) return 0;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
