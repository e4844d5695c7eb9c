// Holding a download back until every process of a herd has asked for its object (the
// fetch-once tests: each process must meet the first one's lock, not its published result).
import { setTimeout as sleep } from "node:timers/promises";
import { expect } from "vitest";
import type { FaultProxy } from "./fault-proxy.ts";

/**
 * Holds `proxy` at a crawl until `processes` have asked for `key` (each resolves it before it
 * takes the lock) and have had a second to reach the lock, then lets it go at `rate`: every
 * process is then waiting on the first holder, however slowly it started (CPU-bound starts
 * of 17 processes at once took seconds; a late one tried the download again for itself).
 */
export async function crawlUntilAllAsked(
  proxy: FaultProxy,
  key: string,
  processes: number,
  rate: number,
): Promise<void> {
  proxy.throttle(32 * 1024);
  const asked = () =>
    proxy.requests.filter((request) => request.method === "HEAD" && request.target.includes(key))
      .length;
  try {
    await expect.poll(asked, { timeout: 60_000, interval: 50 }).toBeGreaterThanOrEqual(processes);
    await sleep(1_000);
  } finally {
    proxy.throttle(rate);
  }
}
