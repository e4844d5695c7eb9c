/**
 * Transfer tuning from the environment. The defaults suit most machines; these exist for
 * slow or flaky links and for tests that need small ranges or a short stall bound. Pure.
 */
import { DsfetchError } from "../errors.ts";
import { parseSize, SIZE_FORMS } from "./size.ts";

export interface TransferTuning {
  /** Size of each ranged GET of one object. */
  readonly rangeSize: number;
  /** Ranged GETs in flight for one object. */
  readonly rangeConcurrency: number;
  /** Objects in flight for a folder dataset. */
  readonly objectConcurrency: number;
  /** A connection silent this long (before or during a body) is abandoned and resumed. */
  readonly stallTimeoutMs: number;
}

export const DEFAULT_TUNING: TransferTuning = Object.freeze({
  rangeSize: 8 * 1024 * 1024,
  rangeConcurrency: 8,
  objectConcurrency: 32,
  stallTimeoutMs: 30_000,
});

export function resolveTuning(env: Readonly<Record<string, string | undefined>>): TransferTuning {
  const rangeSizeText = env.DSFETCH_RANGE_SIZE;
  let rangeSize = DEFAULT_TUNING.rangeSize;
  if (rangeSizeText !== undefined && rangeSizeText !== "") {
    const parsed = parseSize(rangeSizeText);
    if (!parsed.ok || parsed.bytes < 64 * 1024 || parsed.bytes > 5 * 2 ** 30) {
      throw new DsfetchError(
        "USAGE",
        `DSFETCH_RANGE_SIZE: ${parsed.ok ? `${rangeSizeText} is outside 64Ki-5Gi` : parsed.reason}`,
        {
          hint: `accepted: ${SIZE_FORMS}, from 64Ki to 5Gi`,
        },
      );
    }
    rangeSize = parsed.bytes;
  }
  return Object.freeze({
    rangeSize,
    rangeConcurrency: integer(
      env,
      "DSFETCH_RANGE_CONCURRENCY",
      DEFAULT_TUNING.rangeConcurrency,
      1,
      64,
    ),
    objectConcurrency: integer(
      env,
      "DSFETCH_OBJECT_CONCURRENCY",
      DEFAULT_TUNING.objectConcurrency,
      1,
      256,
    ),
    stallTimeoutMs: seconds(env, "DSFETCH_STALL_TIMEOUT", DEFAULT_TUNING.stallTimeoutMs),
  });
}

function integer(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new DsfetchError(
      "USAGE",
      `${name}: ${JSON.stringify(text)} is not a whole number from ${min} to ${max}`,
      {
        hint: `unset ${name} for the default (${fallback})`,
      },
    );
  }
  return value;
}

function seconds(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  fallbackMs: number,
): number {
  const text = env[name];
  if (text === undefined || text === "") return fallbackMs;
  const value = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || value < 0.1 || value > 3600) {
    throw new DsfetchError(
      "USAGE",
      `${name}: ${JSON.stringify(text)} is not a number of seconds from 0.1 to 3600`,
      {
        hint: `unset ${name} for the default (${fallbackMs / 1000} s)`,
      },
    );
  }
  return Math.round(value * 1000);
}
