/**
 * Resource limits for dsfetch's worker threads: a young generation of 1 MiB semi-spaces, its
 * starting size. V8 would grow it to 64 MiB semi-spaces here (128 MiB of new space) in a
 * thread that allocates fast (an extraction writing 20,000 files, a decompressor's output
 * read in batches). Not the main thread's 8 MiB (cli/heap-tuning.ts): the threads' garbage
 * dies young at any size, and 8 MiB each made a streamed .tar.xz's peak RSS 227-249 MiB
 * against 202-208 MiB, with the same CPU. In the CLI the threads were kept at 1 MiB before
 * by the growth factor; this holds it whatever the factor (library use too).
 */
import type { ResourceLimits } from "node:worker_threads";

/** V8 counts both semi-spaces and the new large-object space: 3 MiB is 1 MiB semi-spaces. */
export const WORKER_RESOURCE_LIMITS: ResourceLimits = { maxYoungGenerationSizeMb: 3 };
