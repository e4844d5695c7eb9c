/**
 * How an archive's files are written (tar-extract.ts): one at a time with synchronous calls
 * (fastest on local disks: ~3 us a call), several at once through the thread pool
 * (parallel-writes.ts: for storage where each create and close is a round trip), or "auto":
 * one at a time, timed, switching to parallel once a window of files took longer than a
 * local disk ever does. Its own file so that configuration does not load the extractor.
 */
export type WriteMode = "auto" | "serial" | "parallel";

export const WRITE_MODES: readonly WriteMode[] = ["auto", "serial", "parallel"];
