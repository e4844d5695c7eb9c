/**
 * Sleeps up to `ms`, waking early when something changes in `dir` (a lock released, a
 * dataset renamed into place). Waiters on the same machine then follow the holder at once
 * instead of up to a poll period later; across machines (NFS sends no inotify events) the
 * poll period still bounds the wait. Never throws for the watch itself: where it cannot be
 * set up (inotify limits, odd filesystems) this is a plain sleep.
 */
import { type FSWatcher, watch } from "node:fs";

export function waitForChange(dir: string, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let watcher: FSWatcher | undefined;
    const finish = (error?: unknown) => {
      clearTimeout(timer);
      watcher?.close();
      signal?.removeEventListener("abort", onAbort);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = () => finish(signal?.reason ?? new Error("aborted"));
    const timer = setTimeout(() => finish(), ms);
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      watcher = watch(dir, { persistent: false }, () => finish());
      watcher.on("error", () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      watcher = undefined;
    }
  });
}
