/**
 * How the files of an archive (archive/tar-extract.ts) or of a folder dataset
 * (fetch/download-prefix.ts) are written: one at a time with synchronous calls (fastest on
 * local disks: ~3 us a call), several at once through the thread pool (for storage where each
 * create and close is a round trip: NFS, EFS), or "auto": one at a time, timed, switching to
 * parallel once a window of files took longer than a local disk ever does
 * (util/slow-creates.ts). DSFETCH_FILE_WRITES (config/tuning.ts).
 */
export type WriteMode = "auto" | "serial" | "parallel";

export const WRITE_MODES: readonly WriteMode[] = ["auto", "serial", "parallel"];
