/**
 * Waits for `done`, or throws the signal's reason as soon as it fires (and at once when it
 * already has). Used where an extraction waits for files written in parallel: on slow
 * storage that wait can be long, and an interrupt must not wait for it.
 */
export async function untilOrAborted<T>(done: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal === undefined) return done;
  // Given up on when the signal wins, `done` may still fail later (an extractor failed by
  // the abort itself): that is no unhandled rejection. The race below still sees it.
  done.catch(() => {});
  signal.throwIfAborted();
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      done,
      new Promise<never>((_, reject) => {
        onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    // One listener per wait, removed after it: thousands of waits must not pile up listeners.
    if (onAbort !== undefined) signal.removeEventListener("abort", onAbort);
  }
}
