/**
 * Tells storage where creating a file is a round trip (NFS, EFS, Lustre, a FUSE mount of an
 * object store) from a local disk, by timing the creates and closes dsfetch does anyway: one
 * file at a time is fastest on a local disk (synchronous calls, ~3 us each), several at once
 * through the thread pool on network storage (archive/parallel-writes.ts).
 *
 * Times are summed over windows of WINDOW files; once a window's mean exceeds SLOW_CREATE_US
 * the storage counts as slow for good. A local disk or tmpfs takes 10-30 us per file here
 * (ext4 after mass deletions up to ~100 us), an NFS create alone is a round trip to the server
 * (0.2-2 ms on a LAN, more on EFS).
 */
import type { WriteMode } from "./write-mode.ts";

export const WINDOW = 32;
export const SLOW_CREATE_US = 250;

export class SlowCreates {
  private readonly thresholdUs: number;
  private files = 0;
  private ms = 0;
  private isSlow = false;

  /** Files written by the parallel path (counted by the writers, for the report). */
  parallelFiles = 0;

  constructor(thresholdUs = SLOW_CREATE_US) {
    this.thresholdUs = thresholdUs;
  }

  /** "serial": never slow; "parallel": slow from the start; "auto": timed. */
  static forMode(mode: WriteMode = "auto", thresholdUs?: number): SlowCreates {
    const creates = new SlowCreates(mode === "serial" ? Number.POSITIVE_INFINITY : thresholdUs);
    if (mode === "parallel") creates.isSlow = true;
    return creates;
  }

  /** Whether creates turned out slow (then stays so). */
  get slow(): boolean {
    return this.isSlow;
  }

  /** Adds time spent creating or closing the current file (ms, from performance.now()). */
  add(ms: number): void {
    this.ms += ms;
  }

  /** One more file done; true when this file's window decided that storage is slow. */
  fileDone(): boolean {
    if (this.isSlow) return false;
    this.files++;
    if (this.files < WINDOW) return false;
    this.isSlow = (this.ms * 1000) / this.files > this.thresholdUs;
    this.files = 0;
    this.ms = 0;
    return this.isSlow;
  }
}
