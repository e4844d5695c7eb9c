/**
 * libuv's thread pool is shared by the whole process: DNS lookups of S3 endpoints, O_DIRECT
 * writes, every asynchronous file call (lock refreshes, removals) and the parallel writes of
 * slow storage all queue there. Files written in parallel on a hung NFS server block every
 * thread they hold, so all of them together never take more than the pool less RESERVED
 * threads (found in review: 16 files in flight on a pool of 16 stalled everything else). The
 * pool is shared by every dataset staged at once (stage(): SHARERS by default), each with its
 * own writers, so each gets an equal part. Where that part is nothing (libuv's default pool
 * of 4, in a program using the library), "auto" never writes in parallel.
 */
export const RESERVED = 4;
/** Datasets staged at once by default (stage/stage.ts), each with its own parallel writes. */
export const SHARERS = 2;

/**
 * The pool's size as libuv reads it: atoi(UV_THREADPOOL_SIZE), 0 (or no number) meaning 1,
 * at most 1024 (a negative number wraps to "at most" too); 4 when the variable is unset.
 */
export function threadPoolSize(
  env: Readonly<Record<string, string | undefined>> = process.env,
): number {
  const text = env.UV_THREADPOOL_SIZE;
  if (text === undefined) return 4;
  const digits = /^[\t\n\v\f\r ]*([+-]?\d+)/.exec(text)?.[1];
  const size = digits === undefined ? 0 : Number.parseInt(digits, 10);
  if (size === 0) return 1;
  return size < 0 || size > 1024 ? 1024 : size;
}

/** Parallel file requests one dataset may have in flight: up to `wanted`; 0: none. */
export function parallelFileShare(wanted: number, poolSize = threadPoolSize()): number {
  return Math.max(0, Math.min(wanted, Math.floor((poolSize - RESERVED) / SHARERS)));
}
