/**
 * Tells storage where creating a file is a round trip (NFS, EFS, Lustre, a FUSE mount of an
 * object store) from a local disk, by timing the creates and closes dsfetch does anyway: one
 * file at a time is fastest on a local disk (synchronous calls, ~3 us each), several at once
 * through the thread pool on network storage (archive/parallel-writes.ts).
 *
 * Creates and closes are timed over windows of WINDOW files. A window whose mean exceeds
 * SLOW_CREATE_US is confirmed by the next one, timed with this thread's busy time too: network
 * storage is slow because the thread waits for the server, and only waiting is helped by
 * more files in flight. A local disk can be slow while the thread works in the kernel (this
 * machine's ext4, after mass deletions: 100-400 us a create, all of it CPU; parallel writes
 * made a 20,000-file tar 30% slower there), which the confirmation tells apart. Busy is the
 * time on a CPU and, where Linux tells it (/proc/thread-self/schedstat), the time spent ready
 * but waiting for a CPU: a streamed archive's extraction shares 2 cores with the download,
 * the hash and a local S3 server, and a window in which it was descheduled looked like
 * waiting for a server (2 of 3 fetches of the bench's 20,000-file tar went parallel on a local
 * ext4, 36 threads creating files on 2 busy cores). Without either clock (Node < 23.9, no
 * schedstat) the first slow window decides. Once slow, for good.
 *
 * A local disk or tmpfs takes 10-30 us per file here; an NFS create alone is a round trip to
 * the server (0.2-2 ms on a LAN, more on EFS).
 */
import { readFileSync } from "node:fs";
import { parallelFileShare } from "./thread-pool.ts";
import type { WriteMode } from "./write-mode.ts";

export const WINDOW = 32;
export const SLOW_CREATE_US = 250;
/** A confirmed window must have spent at least this share of its create time waiting. */
const WAITING_SHARE = 0.5;
/** Windows not confirmed again after a slow window that was busy, not waiting. */
const COOLDOWN_WINDOWS = 64;

/** This thread's busy time in us: on a CPU, or ready and waiting for one. */
type BusyClock = () => number;

/**
 * From /proc/thread-self/schedstat ("<ns on a CPU> <ns waiting on a run queue> <timeslices>",
 * Linux with scheduler statistics, as every mainstream kernel is built): both count as busy.
 * Read each time (open, read, close: a few us, during confirming windows only): the file
 * names the thread that opens it, and a SlowCreates may be made on another thread than the
 * one that times with it.
 */
function readSchedstatUs(): number {
  const text = readFileSync("/proc/thread-self/schedstat", "latin1");
  const [onCpu, queued] = text.split(" ");
  const us = (Number(onCpu) + Number(queued)) / 1000;
  if (!Number.isFinite(us)) throw new Error(`unexpected schedstat: ${text.slice(0, 60)}`);
  return us;
}

/** This thread's CPU time in us, where Node has the clock (>= 23.9): no run-queue wait. */
const cpuTime: BusyClock | undefined =
  typeof process.threadCpuUsage === "function"
    ? () => {
        const { user, system } = process.threadCpuUsage();
        return user + system;
      }
    : undefined;

/** The best busy clock of this platform, undefined where there is none. */
function defaultBusyClock(): BusyClock | undefined {
  try {
    readSchedstatUs();
    return readSchedstatUs;
  } catch {
    return cpuTime;
  }
}
const threadBusy = defaultBusyClock();

export class SlowCreates {
  private readonly thresholdUs: number;
  private readonly busy: BusyClock | null;
  private readonly wall: () => number;
  private files = 0;
  private wallMs = 0;
  private busyUs = 0;
  private wallStart = 0;
  private busyStart = 0;
  /** The current window is timed with CPU too. */
  private confirming = false;
  private cooldown = 0;
  private isSlow = false;

  /** Files written by the parallel path (counted by the writers, for the report). */
  parallelFiles = 0;
  /** Parallel writes in flight, and those waiting for a turn (util/thread-pool.ts). */
  private inFlight = 0;
  private readonly turns: (() => void)[] = [];
  private readonly maxInFlight = Math.max(1, parallelFileShare(16));

  /** Waits for a turn to write through the thread pool; call release() after. */
  acquire(): Promise<void> | undefined {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return undefined;
    }
    return new Promise((resolve) => this.turns.push(resolve));
  }

  release(): void {
    const next = this.turns.shift();
    if (next !== undefined) next();
    else this.inFlight--;
  }

  /**
   * @param busy this thread's busy clock in us (on a CPU or waiting for one); null: decide on
   *   wall time alone
   * @param wall the wall clock in ms (both clocks: for tests)
   */
  constructor(
    // No share of the thread pool (util/thread-pool.ts): never slow enough to go parallel.
    thresholdUs = parallelFileShare(16) > 0 ? SLOW_CREATE_US : Number.POSITIVE_INFINITY,
    busy: BusyClock | null = threadBusy ?? null,
    wall: () => number = () => performance.now(),
  ) {
    this.thresholdUs = thresholdUs;
    this.busy = busy;
    this.wall = wall;
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

  /** Before a create or a close of the current file. */
  begin(): void {
    if (this.confirming && this.busy !== null) this.busyStart = this.busy();
    this.wallStart = this.wall();
  }

  /** After it. */
  end(): void {
    this.wallMs += this.wall() - this.wallStart;
    if (this.confirming && this.busy !== null) this.busyUs += this.busy() - this.busyStart;
  }

  /** One more file done; true when this file's window decided that storage is slow. */
  fileDone(): boolean {
    if (this.isSlow) return false;
    this.files++;
    if (this.files < WINDOW) return false;
    const wallUs = this.wallMs * 1000;
    const slowWindow = wallUs / this.files > this.thresholdUs;
    if (this.confirming) {
      this.confirming = false;
      if (slowWindow && wallUs - this.busyUs >= WAITING_SHARE * wallUs) this.isSlow = true;
      else if (slowWindow) this.cooldown = COOLDOWN_WINDOWS;
    } else if (this.cooldown > 0) {
      this.cooldown--;
    } else if (slowWindow) {
      if (this.busy === null) this.isSlow = true;
      else this.confirming = true;
    }
    this.files = 0;
    this.wallMs = 0;
    this.busyUs = 0;
    return this.isSlow;
  }
}
