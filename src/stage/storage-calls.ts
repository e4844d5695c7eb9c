/**
 * The calls on storage that a dataset's staging makes outside its download's or its
 * extraction's own clock (reading a manifest, checking the storage, the lock and its waits,
 * syncing and renaming to publish, removing trees, marking use), each under a bound.
 *
 * Why: measured on a FUSE mount frozen at publish's rename (session 16), `dsfetch fetch`
 * printed nothing and did not answer SIGTERM until it was killed: the rename waited in the
 * kernel, and nothing was watching. A waiter of the lock did the same on storage that hung
 * while it waited (its polls never came back, so DSFETCH_LOCK_WAIT was never looked at). Now
 * a call that gets no answer for the stall bound (DSFETCH_EXTRACT_STALL_TIMEOUT; longer where
 * the call asks: a filesystem's sync) fails the dataset with STALLED, and an interrupt is
 * answered within a grace. Work made of many calls (a tree's removal) reports each one, and
 * is a stall only when they stop. A call that answers within the grace gives that answer: a
 * rename that landed is not reported as one that did not. A call left behind is noted
 * (util/stuck-threads.ts: the CLI then ends by execve, as Node cannot exit while it is
 * stuck) and remembered here, so that nothing races it: the attempt it may still be renaming
 * is not removed while it is pending (stage-dataset.ts).
 */

import { DsfetchError } from "../errors.ts";
import type { StorageCall } from "../volumes/storage-call.ts";
import { STALLED_HINT, stopGraceMs, watchProgress } from "./progress-watchdog.ts";

export interface StorageCallsOptions {
  readonly dataset: string;
  /** No answer for this long: STALLED. */
  readonly stallMs: number;
  /** How long a call is still waited for once interrupted. */
  readonly graceMs: number;
  readonly signal?: AbortSignal | undefined;
}

export class StorageCalls {
  readonly #options: StorageCallsOptions;
  /** Calls given up on that have not settled since. */
  readonly #pending = new Map<number, string>();
  #next = 0;

  constructor(options: StorageCallsOptions) {
    this.#options = options;
  }

  readonly call: StorageCall = async (what, work, callOptions) => {
    const { dataset, signal } = this.#options;
    const stallMs = Math.max(this.#options.stallMs, callOptions?.atLeastMs ?? 0);
    // A call with a longer bound of its own (a filesystem's sync) has the grace of that bound
    // (found in review: an interrupt gave up a healthy sync after the 1 s of a 1 s bound).
    const graceMs =
      callOptions?.atLeastMs === undefined
        ? this.#options.graceMs
        : Math.max(this.#options.graceMs, stopGraceMs(stallMs));
    const earlier = this.pending()[0];
    if (earlier !== undefined) {
      // The storage has left a call unanswered: waiting a whole bound again for each call
      // after it would hold the answer back for one bound per call (found in review: ~20
      // minutes before a published dataset returned).
      throw new DsfetchError(
        "STALLED",
        `${dataset}: ${what} was not tried: ${earlier} has had no answer from the storage yet`,
        { dataset, hint: STALLED_HINT },
      );
    }
    let running: Promise<unknown> | undefined;
    let settled = false;
    try {
      return await watchProgress(
        (stop, progressed) => {
          const started = work(stop, () => progressed(0));
          running = started;
          started.then(
            () => (settled = true),
            () => (settled = true),
          );
          return started;
        },
        {
          signal: callOptions?.uninterruptible === true ? undefined : signal,
          stallMs,
          graceMs,
          dataset,
          writing: what,
          bytes: Number.POSITIVE_INFINITY,
          stalled: `${what} got no answer from the storage`,
          answerWithinGrace: true,
        },
      );
    } catch (error) {
      if (running !== undefined && !settled) {
        const id = this.#next++;
        this.#pending.set(id, what);
        const forget = () => this.#pending.delete(id);
        running.then(forget, forget);
      }
      throw error;
    }
  };

  /** What was given up on and still has no answer, oldest first. */
  pending(): readonly string[] {
    return [...this.#pending.values()];
  }
}
