/**
 * How the calls on shared storage of publishing and of the lock are made: through a bound
 * given by the stager (stage/storage-calls.ts: a call that gets no answer fails with
 * STALLED instead of waiting for hung storage for good), or as they are.
 */

export interface StorageCallOptions {
  /**
   * A bound of at least this long, for a call that may legitimately take longer than a
   * metadata call (syncing a filesystem).
   */
  readonly atLeastMs?: number | undefined;
  /**
   * Not stopped by an interrupt, only by the stall bound: short steps that must not be left
   * half-done (replacing a published tree: stopped between its renames, the final path
   * would hold nothing; found in review).
   */
  readonly uninterruptible?: boolean | undefined;
}

/**
 * Runs one call (or a short series of them) on storage: `what` names it in the error.
 * `signal` aborts when the call is given up on (a child process can then be killed);
 * `progressed` is for work made of many calls (a tree's removal): each call that answers
 * starts the bound again.
 */
export type StorageCall = <T>(
  what: string,
  work: (signal: AbortSignal, progressed: () => void) => Promise<T>,
  options?: StorageCallOptions,
) => Promise<T>;

/** No bound: for callers with no clock of their own (prune, tests). */
export const unboundedCall: StorageCall = (_what, work) =>
  work(new AbortController().signal, () => {});
