/**
 * How the calls on shared storage of publishing and of the lock are made: through a bound
 * given by the stager (stage/storage-calls.ts: a call that gets no answer fails with
 * STALLED instead of waiting for hung storage for good), or as they are.
 */

/** Runs one call (or a short series of them) on storage: `what` names it in the error. */
export type StorageCall = <T>(what: string, work: () => Promise<T>) => Promise<T>;

/** No bound: for callers with no clock of their own (prune, tests). */
export const unboundedCall: StorageCall = (_what, work) => work();
