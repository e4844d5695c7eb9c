/** Counts a dataset's bytes and objects and emits progress events, at most every 250 ms. */
import type { EventListener } from "../events.ts";

const INTERVAL_MS = 250;

export class ProgressTracker {
  private bytes = 0;
  /** Of `bytes`, those kept from an earlier attempt (not fetched by this one). */
  private kept = 0;
  private objects = 0;
  private lastEmit = 0;
  private lastEmittedBytes = -1;
  private lastEmittedObjects = -1;
  private readonly started = performance.now();
  private readonly dataset: string;
  private readonly totalBytes: number;
  private readonly totalObjects: number;
  private readonly onEvent: EventListener;

  constructor(dataset: string, totalBytes: number, totalObjects: number, onEvent: EventListener) {
    this.dataset = dataset;
    this.totalBytes = totalBytes;
    this.totalObjects = totalObjects;
    this.onEvent = onEvent;
  }

  addBytes = (bytes: number): void => {
    this.bytes += bytes;
    this.maybeEmit();
  };

  /**
   * Bytes already there (a folder's objects kept from the attempt before: kept-objects.ts):
   * progress towards the total, but neither fetched (metrics) nor part of the rate.
   */
  addKept = (bytes: number): void => {
    this.bytes += bytes;
    this.kept += bytes;
    this.maybeEmit();
  };

  addObject = (): void => {
    this.objects += 1;
    this.maybeEmit();
  };

  /** Restarts the count (a download that starts over on a new version). */
  reset(): void {
    this.bytes = 0;
    this.kept = 0;
    this.objects = 0;
  }

  /**
   * The last count, unless already said. Objects too: a folder's bytes all arrive before its
   * last objects are verified, and the last line read `100% … 0/3 objects` (tester, 2026-12-07).
   */
  finish(): void {
    if (this.lastEmittedBytes !== this.bytes || this.lastEmittedObjects !== this.objects) {
      this.emit();
    }
  }

  private maybeEmit(): void {
    const now = performance.now();
    if (now - this.lastEmit >= INTERVAL_MS) this.emit(now);
  }

  private emit(now = performance.now()): void {
    this.lastEmit = now;
    this.lastEmittedBytes = this.bytes;
    this.lastEmittedObjects = this.objects;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    this.onEvent({
      type: "progress",
      dataset: this.dataset,
      bytes: this.bytes,
      totalBytes: this.totalBytes,
      objects: this.objects,
      totalObjects: this.totalObjects,
      bytesPerSecond: (this.bytes - this.kept) / seconds,
      ...(this.kept > 0 ? { keptBytes: this.kept } : {}),
    });
  }
}
