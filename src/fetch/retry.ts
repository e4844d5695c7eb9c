/**
 * Every remote call goes through this one retry wrapper, with one classifier
 * (s3-errors.ts): transient failures are retried with jittered exponential backoff,
 * permanent ones fail at once.
 */
import pRetry from "p-retry";
import { isRetryableS3Error } from "./s3-errors.ts";

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

export function withRetry<T>(
  operation: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  return pRetry(operation, {
    retries: options.retries ?? DEFAULT_RETRIES,
    minTimeout: options.minDelayMs ?? 200,
    maxTimeout: options.maxDelayMs ?? 10_000,
    factor: 2,
    randomize: true,
    signal: options.signal,
    shouldRetry: ({ error }) => isRetryableS3Error(error),
    shouldConsumeRetry: ({ error }) => options.consumesRetry?.(error) ?? true,
    onFailedAttempt: ({ error, attemptNumber, retriesLeft, retryDelay }) => {
      if (retriesLeft > 0 && isRetryableS3Error(error)) {
        options.onRetry?.(error, attemptNumber, retryDelay);
      }
    },
  });
}
