/**
 * The stall watchdog of an extraction thread (extract-in-worker.ts for tar, zip-in-worker.ts
 * for zip), run on the thread that waits for it.
 *
 * Progress is the later of what this thread saw (`progressed()`: a message, work handed
 * over) and the thread's clock in shared memory, which it sets whenever it moves on and
 * which is current even while this thread is too busy to receive messages. With work to do
 * and no progress for `stallTimeoutMs`, the extraction is stalled (`onStall`). Told to stop
 * (`abortSent()`), a thread that does not answer within the grace is blocked in a system
 * call (`onAbandon`). A tick that comes far too late means the whole process was stopped or
 * frozen: the clocks start again then.
 */
import { STOP_GRACE_MS } from "./thread-ending.ts";

export interface ThreadWatchdogOptions {
  /** The thread's clock: ms since the epoch of its last progress. */
  readonly clock: Float64Array;
  /** Default: no bound (only the grace after an abort is watched). */
  readonly stallTimeoutMs?: number | undefined;
  /** The thread answered: nothing more to watch. */
  readonly settled: () => boolean;
  /** The thread has work (input handed over, or the end): only then can it stall. */
  readonly hasWork: () => boolean;
  /** No progress for the bound: the caller answers STALLED and tells the thread to stop. */
  readonly onStall: () => void;
  /** Told to stop, no answer within the grace: the caller answers without it. */
  readonly onAbandon: () => void;
}

export class ThreadWatchdog {
  /** How long a thread told to stop is waited for. */
  readonly graceMs: number;
  /** The watchdog decided the thread stalled (before anything else failed it). */
  stalled = false;
  /** Told to stop, the thread did not answer within the grace: not waited for. */
  abandoned = false;
  private readonly options: ThreadWatchdogOptions;
  private readonly tickMs: number;
  private lastProgressAt = performance.now();
  private abortSentAt: number | undefined;
  private lastTickAt = performance.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ThreadWatchdogOptions) {
    this.options = options;
    const { stallTimeoutMs } = options;
    this.graceMs = Math.min(STOP_GRACE_MS, stallTimeoutMs ?? STOP_GRACE_MS);
    this.tickMs = Math.max(10, Math.min(1000, this.graceMs / 4, (stallTimeoutMs ?? Infinity) / 4));
  }

  start(): void {
    this.lastTickAt = performance.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The thread showed progress (as seen here), or got work after it had none. */
  progressed(): void {
    this.lastProgressAt = performance.now();
  }

  /** The thread was told to stop (the first time counts). */
  abortSent(): void {
    this.abortSentAt ??= performance.now();
  }

  private sinceProgress(): number {
    const { clock } = this.options;
    return (
      performance.now() - Math.max(this.lastProgressAt, (clock[0] ?? 0) - performance.timeOrigin)
    );
  }

  private tick(): void {
    const { stallTimeoutMs, settled } = this.options;
    const now = performance.now();
    const sinceTick = now - this.lastTickAt;
    this.lastTickAt = now;
    if (settled()) return;
    if (sinceTick > this.tickMs + Math.min(this.graceMs, stallTimeoutMs ?? this.graceMs) / 2) {
      // This turn comes far too late: the whole process was stopped or frozen (Ctrl-Z,
      // `docker pause`, a cgroup freeze), or this thread was busy. The extraction thread
      // could not show progress either: its clock starts again now.
      this.lastProgressAt = now;
      if (this.abortSentAt !== undefined) this.abortSentAt = now;
      return;
    }
    if (this.abortSentAt !== undefined) {
      // Told to stop, the thread does not answer: blocked in a system call.
      if (now - this.abortSentAt < this.graceMs) return;
      this.abandoned = true;
      this.options.onAbandon();
      return;
    }
    const stalledNow = () =>
      !settled() &&
      this.abortSentAt === undefined &&
      stallTimeoutMs !== undefined &&
      this.options.hasWork() &&
      this.sinceProgress() >= stallTimeoutMs;
    if (!stalledNow()) return;
    // Timers run before the messages that arrived meanwhile: after this thread was busy
    // (longer than the bound), "taken" and "done" may be waiting. Decide after them.
    setImmediate(() => {
      if (!stalledNow()) return;
      this.stalled = true;
      this.options.onStall();
    });
  }
}
