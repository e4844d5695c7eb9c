/**
 * libuv's thread pool is shared by the whole process: DNS lookups of S3 endpoints, O_DIRECT
 * writes, every asynchronous file call (lock refreshes, removals) and the parallel writes of
 * slow storage all queue there. Files written in parallel on a hung NFS server would block
 * every thread they hold, so they never take more than the pool's size less RESERVED
 * (found in review: 16 files in flight on a pool of 16 stalled everything else).
 */
export const RESERVED = 4;

/** The pool's size as libuv reads it (UV_THREADPOOL_SIZE, default 4, at most 1024). */
export function threadPoolSize(
  env: Readonly<Record<string, string | undefined>> = process.env,
): number {
  const size = Number(env.UV_THREADPOOL_SIZE);
  return Number.isInteger(size) && size > 0 ? Math.min(size, 1024) : 4;
}

/** How many parallel file requests may be in flight: up to `wanted`, at least 2. */
export function parallelFileShare(wanted: number, poolSize = threadPoolSize()): number {
  return Math.max(2, Math.min(wanted, poolSize - RESERVED));
}
