/**
 * Library code never prints: it emits events, and the caller (the CLI, or a program using
 * the library) decides how to render them.
 */

export type DsfetchEvent =
  | { type: "server"; dataset: string; endpoint: string; anonymous: boolean }
  | { type: "resolved"; dataset: string; kind: "object" | "prefix"; bytes: number; objects: number }
  | {
      type: "progress";
      dataset: string;
      bytes: number;
      totalBytes: number;
      objects: number;
      totalObjects: number;
      /** Average since the transfer started (of the bytes fetched: keptBytes not counted). */
      bytesPerSecond: number;
      /**
       * Of `bytes`, those a folder's restart kept from the attempt before instead of fetching
       * them again (kept-objects.ts); absent when none.
       */
      keptBytes?: number;
    }
  | { type: "retry"; dataset: string; attempt: number; delayMs: number; reason: string }
  | { type: "cached"; dataset: string; path: string }
  | {
      type: "waiting";
      dataset: string;
      /** "host pid N", or "another process" when the holder is not known. */
      holder: string;
      waitedMs: number;
      /** Since the holder last refreshed its lock; undefined if the lock just went away. */
      heartbeatAgeMs: number | undefined;
    }
  | { type: "staged"; dataset: string; path: string; bytes: number; seconds: number }
  | { type: "warning"; dataset?: string; message: string }
  | { type: "info"; dataset?: string; message: string };

export type EventListener = (event: DsfetchEvent) => void;

/** A listener that drops everything; the default when a caller passes none. */
export const ignoreEvents: EventListener = () => {};
