/**
 * libuv's thread pool runs the file requests that are not synchronous: O_DIRECT writes of
 * large objects, and an archive's small files once their storage turned out slow
 * (archive/parallel-writes.ts). Its default of 4 threads caps how many files are in flight
 * on a network filesystem: a tar of 20,000 files on storage that takes 1 ms per request
 * (bench/slowfs) took 17.4 s with 4, 9.8 s with 16 (55 s one file at a time, 127 s for GNU
 * tar). `dsfetch run` does not pass our setting on to the training command. libuv reads the variable once, when the pool starts (the first such request, after
 * every module is loaded), so setting it here is in time. Whoever set it keeps theirs; the
 * CLI only: programs that use the library keep their own.
 *
 * Imported first by entry.ts.
 */
// An empty value counts as unset (libuv would read it as a pool of 1 thread).
export const threadPoolSizeSetHere = (process.env.UV_THREADPOOL_SIZE ?? "") === "";
// 4 threads for everything else, 16 for each of the 2 datasets staged at once that may write
// in parallel (util/thread-pool.ts).
if (threadPoolSizeSetHere) process.env.UV_THREADPOOL_SIZE = "36";
