/**
 * Transfer tuning from the environment. The defaults suit most machines; these exist for
 * slow or flaky links and for tests that need small ranges or a short stall bound. Pure.
 */

import { DsfetchError } from "../errors.ts";
import { DEFAULT_RETRIES } from "../fetch/retry.ts";
import { WRITE_MODES, type WriteMode } from "../util/write-mode.ts";
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
  /**
   * An archive's extraction (decompressor, tar writer) that neither takes input nor writes
   * anything for this long while it has work fails with STALLED instead of hanging.
   */
  readonly extractStallTimeoutMs: number;
  /**
   * How the files of an archive or a folder are written: "auto" (one at a time, several at
   * once when creates turn out slow: network storage), "serial" or "parallel"
   * (util/write-mode.ts).
   */
  readonly fileWrites: WriteMode;
  readonly lock: LockTiming;
  /** Bound on what one archive may expand to in shared storage (ephemeral: the volume size). */
  readonly maxExpandedBytes: number;
  /** Large multipart objects written with O_DIRECT where the filesystem takes it. */
  readonly directIo: boolean;
  /**
   * How long shared storage may take to answer the start-up probe before dsfetch stages into
   * an ephemeral volume instead (volumes/storage-probe.ts).
   */
  readonly storageTimeoutMs: number;
  /**
   * How long the main thread may stand still (stuck in a synchronous call on storage that
   * stopped answering) before the dsfetch command ends itself (cli/main-thread-watchdog.ts).
   */
  readonly mainThreadTimeoutMs: number;
  /**
   * `run` forwards a SIGINT to its command even when a terminal's Ctrl-C reached the command
   * directly too (cli/terminal-foreground.ts): for a SIGINT sent to dsfetch alone (a stop
   * signal) while it is a terminal's foreground group.
   */
  readonly alwaysForwardSigint: boolean;
  /**
   * Retries of a failed request to the store (5xx, SlowDown, resets, timeouts) after the first
   * attempt, with jittered backoff from 0.2 s doubling to 10 s (fetch/retry.ts): the default
   * 6 rides out ~10-20 s of an outage; 0 fails at once.
   */
  readonly retries: number;
}

export interface LockTiming {
  /** A lock not refreshed for this long is stale and taken over. */
  readonly staleMs: number;
  /** How often a waiter looks again. */
  readonly pollMs: number;
  /** How long a waiter waits in all before giving up with LOCK_TIMEOUT. */
  readonly waitMs: number;
}

export const DEFAULT_TUNING: TransferTuning = Object.freeze({
  rangeSize: 8 * 1024 * 1024,
  rangeConcurrency: 8,
  objectConcurrency: 128,
  stallTimeoutMs: 30_000,
  extractStallTimeoutMs: 300_000,
  fileWrites: "auto",
  // NFS attribute caches (actimeo up to 60 s) and clock skew: see volumes/lock.ts.
  lock: Object.freeze({ staleMs: 120_000, pollMs: 1_000, waitMs: 2 * 60 * 60_000 }),
  maxExpandedBytes: 2 ** 40,
  directIo: true,
  storageTimeoutMs: 30_000,
  mainThreadTimeoutMs: 300_000,
  alwaysForwardSigint: false,
  retries: DEFAULT_RETRIES,
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
  let maxExpandedBytes = DEFAULT_TUNING.maxExpandedBytes;
  const maxExpandedText = env.DSFETCH_MAX_EXPANDED_SIZE;
  if (maxExpandedText !== undefined && maxExpandedText !== "") {
    const parsed = parseSize(maxExpandedText);
    if (!parsed.ok) {
      throw new DsfetchError("USAGE", `DSFETCH_MAX_EXPANDED_SIZE: ${parsed.reason}`, {
        hint: `accepted: ${SIZE_FORMS}`,
      });
    }
    maxExpandedBytes = parsed.bytes;
  }
  const writesText = env.DSFETCH_FILE_WRITES;
  let fileWrites = DEFAULT_TUNING.fileWrites;
  if (writesText !== undefined && writesText !== "") {
    const mode = WRITE_MODES.find((m) => m === writesText);
    if (mode === undefined) {
      throw new DsfetchError(
        "USAGE",
        `DSFETCH_FILE_WRITES: ${JSON.stringify(writesText.slice(0, 40))} is not one of ${WRITE_MODES.join(", ")}`,
        { hint: "unset DSFETCH_FILE_WRITES for the default (auto)" },
      );
    }
    fileWrites = mode;
  }
  return Object.freeze({
    maxExpandedBytes,
    fileWrites,
    rangeSize,
    directIo: integer(env, "DSFETCH_DIRECT_IO", 1, 0, 1) === 1,
    alwaysForwardSigint: integer(env, "DSFETCH_ALWAYS_FORWARD_SIGINT", 0, 0, 1) === 1,
    retries: integer(env, "DSFETCH_RETRIES", DEFAULT_TUNING.retries, 0, 100),
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
    extractStallTimeoutMs: seconds(
      env,
      "DSFETCH_EXTRACT_STALL_TIMEOUT",
      DEFAULT_TUNING.extractStallTimeoutMs,
      86_400,
    ),
    storageTimeoutMs: seconds(
      env,
      "DSFETCH_STORAGE_TIMEOUT",
      DEFAULT_TUNING.storageTimeoutMs,
      86_400,
    ),
    // At least 1 s: shorter, a garbage collection or a late timer would end a healthy process.
    mainThreadTimeoutMs: seconds(
      env,
      "DSFETCH_MAIN_THREAD_TIMEOUT",
      DEFAULT_TUNING.mainThreadTimeoutMs,
      86_400,
      1,
    ),
    lock: Object.freeze({
      // At least 5 s, said so when refused (review: "from 0.1" was printed, and 1 was taken
      // as 5 without a word).
      staleMs: seconds(env, "DSFETCH_LOCK_STALE", DEFAULT_TUNING.lock.staleMs, 3600, 5),
      pollMs: seconds(env, "DSFETCH_LOCK_POLL", DEFAULT_TUNING.lock.pollMs),
      waitMs: seconds(env, "DSFETCH_LOCK_WAIT", DEFAULT_TUNING.lock.waitMs, 86_400),
    }),
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
  maxSeconds = 3600,
  minSeconds = 0.1,
): number {
  const text = env[name];
  if (text === undefined || text === "") return fallbackMs;
  const value = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || value < minSeconds || value > maxSeconds) {
    throw new DsfetchError(
      "USAGE",
      `${name}: ${JSON.stringify(text)} is not a number of seconds from ${minSeconds} to ${maxSeconds}`,
      {
        hint: `unset ${name} for the default (${fallbackMs / 1000} s)`,
      },
    );
  }
  return Math.round(value * 1000);
}
