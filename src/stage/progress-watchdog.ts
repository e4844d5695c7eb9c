/**
 * A download that stops moving, and what stopping it waits for: a bound on both.
 *
 * Why: an object's bytes go to storage through libuv's thread pool; when the storage stops
 * answering (an NFS server gone, a FUSE daemon frozen) every write waits in the kernel, the
 * download's sockets pause behind them, and nothing fails: measured with a frozen FUSE
 * filesystem (all 36 pool threads in `fuse_file_write_iter`), dsfetch printed nothing for as
 * long as the storage was frozen, and SIGTERM was answered only once it thawed, because the
 * download's unwinding waits for its writes. Here the download runs under a clock: no byte
 * received (and no retry) for `stallMs` fails it with STALLED; an interrupt is answered with
 * its reason. Either way the download is told to stop, and waited for at most `graceMs`;
 * past that its writes are left to the kernel and noted (util/stuck-threads.ts: the CLI then
 * ends by execve, since Node cannot exit while they are stuck: cli/finish.ts).
 */
import { DsfetchError } from "../errors.ts";
import { noteStuckThread } from "../util/stuck-threads.ts";

export const STALLED_HINT =
  "nothing was published; the storage under the dataset is hung or extremely slow: check it and run again (DSFETCH_EXTRACT_STALL_TIMEOUT raises the bound, for storage that is just slow)";

/** How long a download told to stop is waited for (as extraction threads: STOP_GRACE_MS). */
export const DOWNLOAD_STOP_GRACE_MS = 5_000;

/**
 * The grace under a stall bound: DOWNLOAD_STOP_GRACE_MS, or the bound itself when that is
 * shorter (as archive/thread-watchdog.ts does for extraction threads): whoever asks for an
 * answer within 2 s does not want one after 7 s. The default bound (5 min) keeps 5 s.
 */
export function stopGraceMs(stallMs: number): number {
  return Math.min(DOWNLOAD_STOP_GRACE_MS, stallMs);
}

export interface WatchOptions {
  /** The caller's interrupt. */
  readonly signal?: AbortSignal | undefined;
  /** No progress for this long while running: STALLED. */
  readonly stallMs: number;
  /** How long a stopped download is waited for before it is left behind. */
  readonly graceMs: number;
  readonly dataset: string;
  /** What the download writes, for the message and the stuck-thread note. */
  readonly writing: string;
  /**
   * Bytes the download receives in all: once they are in, the bound becomes `tailMs` (what is
   * left, hashing and syncing the file, trails the download by as much as the hash is slower
   * than the link; found in review). An interrupt is still answered.
   */
  readonly bytes: number;
  /**
   * The bound once every byte is in (at least `stallMs`); default: none, the clock stops. The
   * file's last sync and its close report no progress and may be long on a slow disk (a
   * whole dirty-page backlog: tens of GB on large-memory nodes), but a hung one must not go
   * unwatched (review, 2026-12-06: an NFS close that hung left the dataset silent).
   */
  readonly tailMs?: number | undefined;
  /**
   * What stalled, for the error, when it is not a download: "<dataset>: <stalled> for N s"
   * (storage-calls.ts). The stuck-thread note is then this too.
   */
  readonly stalled?: string | undefined;
  /**
   * When the work answers within the grace after all, that answer is the result (its value
   * or its error): for calls whose effect cannot be undone, such as a rename (found in
   * review: a rename that landed in the grace was reported STALLED, and the attempt it had
   * just moved was then treated as never published).
   */
  readonly answerWithinGrace?: boolean | undefined;
}

/**
 * Runs `download(signal, progressed)`: it must call `progressed(bytes)` whenever it makes
 * progress (bytes received; 0 for a retry) and stop when `signal` aborts. Resolves or rejects
 * as it does, except as above.
 */
export async function watchProgress<T>(
  download: (signal: AbortSignal, progressed: (bytes: number) => void) => Promise<T>,
  options: WatchOptions,
): Promise<T> {
  const { signal, stallMs, graceMs, dataset, writing } = options;
  const tailMs = options.tailMs ?? Number.POSITIVE_INFINITY;
  signal?.throwIfAborted();
  const stop = new AbortController();
  let last = performance.now();
  let received = 0;
  const progressed = (bytes: number): void => {
    last = performance.now();
    received += bytes;
  };
  const running = download(stop.signal, progressed);
  // Settled, one way or the other; never an unhandled rejection once left behind.
  const settled = running.then(
    () => true,
    () => true,
  );
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const period = Math.max(50, Math.min(1000, stallMs / 4));
  let lastTick = performance.now();
  const interrupted = new Promise<"stalled" | "interrupted">((resolve) => {
    timer = setInterval(() => {
      const now = performance.now();
      // A late tick means this process did not run (SIGSTOP, a frozen cgroup, a long busy
      // turn of this thread): that time is nobody's stall (as archive/thread-watchdog.ts).
      if (now - lastTick > period + Math.max(1000, period)) last = Math.max(last, now - period);
      lastTick = now;
      const bound = (): number => (received >= options.bytes ? Math.max(stallMs, tailMs) : stallMs);
      if (now - last <= bound()) return;
      // Bytes that arrived while this thread was busy are handled before the verdict.
      setImmediate(() => {
        if (performance.now() - last > bound()) resolve("stalled");
      });
    }, period);
    timer.unref();
    onAbort = () => resolve("interrupted");
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const first = await Promise.race([settled.then(() => "done" as const), interrupted]);
    if (first === "done") return await running;
    const reason =
      first === "stalled"
        ? new DsfetchError(
            "STALLED",
            options.stalled !== undefined
              ? `${dataset}: ${options.stalled} for ${stallMs / 1000} s`
              : received >= options.bytes
                ? `${dataset}: every byte was received, but the last writes to ${writing} (its last sync, its close) did not finish within ${Math.max(stallMs, tailMs) / 1000} s`
                : `${dataset}: the download made no progress for ${stallMs / 1000} s (no byte received, no retry: the writes to ${writing} did not finish, or the store sent nothing)`,
            {
              dataset,
              hint: STALLED_HINT,
            },
          )
        : signal?.reason;
    stop.abort(reason);
    let graceTimer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<false>((resolve) => {
      // Decided after the I/O callbacks already due: when this thread was busy past the
      // grace, the timer comes before the poll phase that would deliver the work's answer
      // (a rename that landed in time reported STALLED; found in review, and likelier since
      // the grace follows short bounds).
      graceTimer = setTimeout(() => setImmediate(() => resolve(false)), graceMs);
    });
    const ended = await Promise.race([settled, graceOver]);
    clearTimeout(graceTimer);
    if (ended && options.answerWithinGrace === true) {
      try {
        return await running;
      } catch (error) {
        // Stopped by us (a child process killed when given up on): the stall or the interrupt
        // is the answer, not the abort it caused (found in review: reported as a storage error).
        if (error === reason || (error as Error | undefined)?.name === "AbortError") throw reason;
        throw error;
      }
    }
    if (!ended) noteStuckThread(options.stalled ?? `writing ${writing}`, settled);
    // An interrupt that came as the download finished is still an interrupt, never a success.
    if (first === "interrupted") signal?.throwIfAborted();
    throw reason;
  } finally {
    clearInterval(timer);
    if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
  }
}
