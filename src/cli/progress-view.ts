/**
 * Renders library events for people on stderr: a redrawn status line on a terminal, plain
 * lines (at most one per dataset every 5 s) otherwise. Never on stdout.
 */
import { formatBytes } from "../config/size.ts";
import type { DsfetchEvent } from "../events.ts";

const PLAIN_INTERVAL_MS = 5_000;

export class ProgressView {
  private readonly write: (text: string) => void;
  private readonly tty: boolean;
  private readonly lastPlain = new Map<string, number>();
  /** Each dataset's bytes on its last plain progress line. */
  private readonly lastPlainBytes = new Map<string, number>();
  private statusShown = false;

  constructor(write: (text: string) => void, tty: boolean) {
    this.write = write;
    this.tty = tty;
  }

  handle = (event: DsfetchEvent): void => {
    switch (event.type) {
      case "progress": {
        const line = progressLine(event);
        if (this.tty) {
          this.write(`\r\x1b[K${line}`);
          this.statusShown = true;
          return;
        }
        const now = Date.now();
        // The first line comes after one interval: short transfers print only their end.
        if (!this.lastPlain.has(event.dataset)) this.lastPlain.set(event.dataset, now);
        const last = this.lastPlain.get(event.dataset) ?? now;
        const end = event.bytes === event.totalBytes;
        // Counted from zero again (the archive streamed anew): its end is a new one.
        if (event.bytes < (this.lastPlainBytes.get(event.dataset) ?? 0)) {
          this.lastPlainBytes.delete(event.dataset);
        }
        // The end once: an archive's and a refreshed object's came twice (the bytes, then
        // the objects or the verification: exploratory tester, 2026-12-08).
        if (end && this.lastPlainBytes.get(event.dataset) === event.bytes) return;
        if (now - last >= PLAIN_INTERVAL_MS || end) {
          this.lastPlain.set(event.dataset, now);
          this.lastPlainBytes.set(event.dataset, event.bytes);
          this.line(line);
        }
        return;
      }
      case "waiting": {
        // Right away, then every interval: the user sees who holds the dataset, and that it lives.
        const now = Date.now();
        const key = `waiting:${event.dataset}`;
        const last = this.lastPlain.get(key);
        if (last !== undefined && now - last < PLAIN_INTERVAL_MS) return;
        this.lastPlain.set(key, now);
        const heartbeat =
          event.heartbeatAgeMs === undefined
            ? ""
            : `; its lock was refreshed ${Math.round(event.heartbeatAgeMs / 1000)} s ago`;
        this.line(
          `${event.dataset}: waiting for ${event.holder} to finish downloading it (waited ${Math.round(event.waitedMs / 1000)} s${heartbeat})`,
        );
        return;
      }
      case "retry":
        this.line(
          `${event.dataset}: retrying (attempt ${event.attempt + 1} in ${Math.round(event.delayMs)} ms): ${event.reason}`,
        );
        return;
      case "cached":
        this.line(`${event.dataset}: already staged at ${event.path}`);
        return;
      case "staged":
        this.line(
          `${event.dataset}: staged ${formatBytes(event.bytes)} at ${event.path} in ${event.seconds.toFixed(2)} s`,
        );
        return;
      case "warning":
        this.line(
          `${event.dataset === undefined ? "" : `${event.dataset}: `}warning: ${event.message}`,
        );
        return;
      case "info":
        this.line(`${event.dataset === undefined ? "" : `${event.dataset}: `}${event.message}`);
        return;
      default:
        return;
    }
  };

  /** Clears the status line before the final output. */
  close(): void {
    if (this.statusShown) this.write("\r\x1b[K");
    this.statusShown = false;
  }

  private line(text: string): void {
    this.close();
    this.write(`${text}\n`);
  }
}

function progressLine(event: Extract<DsfetchEvent, { type: "progress" }>): string {
  const percent = event.totalBytes === 0 ? 100 : Math.floor((event.bytes / event.totalBytes) * 100);
  const rate = event.bytesPerSecond;
  const remaining = event.totalBytes - event.bytes;
  const eta = rate > 0 && remaining > 0 ? ` ETA ${Math.ceil(remaining / rate)} s` : "";
  const objects = event.totalObjects > 1 ? ` ${event.objects}/${event.totalObjects} objects` : "";
  return `${event.dataset}: ${percent}% ${formatBytes(event.bytes)}/${formatBytes(event.totalBytes)}${objects} ${formatBytes(rate)}/s${eta}`;
}
