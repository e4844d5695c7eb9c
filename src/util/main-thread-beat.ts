/**
 * The main thread's heartbeat, watched from another thread by the CLI's main-thread watchdog
 * (cli/main-thread-watchdog.ts). The beat is a count in shared memory: a timer adds to it
 * while the event loop turns, and long synchronous loops (volumes/permissions.ts) add to it
 * as they go. A count that stops moving means the main thread is stuck: in one system call
 * on storage that stopped answering (a file written on a hung NFS mount blocks the whole
 * thread, signals included), or in a loop that never ends.
 *
 * The watcher is a thread, and a thread costs ~0.1 s of CPU and ~19 MiB here: so it starts
 * only when the main thread is about to make many synchronous calls on storage (a folder's
 * files, an archive's tree), not for a warm check or a single object (measured: +0.05 s on
 * a 0.27 s warm fetch when it always started).
 */

let beats: Int32Array | undefined;
let starter: (() => void) | undefined;

/** Beats go into `memory` (one Int32 slot) from now on; undefined: nowhere. */
export function beatInto(memory: SharedArrayBuffer | undefined): void {
  beats = memory === undefined ? undefined : new Int32Array(memory, 0, 1);
}

/** Says the main thread is still making progress (cheap: one atomic add). */
export function mainThreadAlive(): void {
  if (beats !== undefined) Atomics.add(beats, 0, 1);
}

/** What syncStorageCallsAhead() starts, once (the CLI's watchdog); undefined: nothing. */
export function onSyncStorageCalls(start: (() => void) | undefined): void {
  starter = start;
}

/** The main thread is about to make many synchronous calls on storage: have it watched. */
export function syncStorageCallsAhead(): void {
  const start = starter;
  starter = undefined;
  start?.();
}
