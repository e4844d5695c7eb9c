// The share of libuv's thread pool that parallel file writes may hold (util/thread-pool.ts),
// and the turns SlowCreates hands out to a folder's parallel writes.
import { describe, expect, it } from "vitest";
import { SlowCreates } from "../../src/util/slow-creates.ts";
import { parallelFileShare, threadPoolSize } from "../../src/util/thread-pool.ts";

describe("thread pool share", () => {
  it("reads UV_THREADPOOL_SIZE as libuv does (default 4, at most 1024)", () => {
    expect(threadPoolSize({})).toBe(4);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "24" })).toBe(24);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "0" })).toBe(4);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "many" })).toBe(4);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "5000" })).toBe(1024);
  });

  it("leaves 4 threads to everything else, and takes at least 2", () => {
    expect(parallelFileShare(16, 24)).toBe(16); // the CLI's pool
    expect(parallelFileShare(16, 16)).toBe(12);
    expect(parallelFileShare(16, 4)).toBe(2); // libuv's default, in a program using the library
    expect(parallelFileShare(1, 24)).toBe(2);
  });

  it("SlowCreates hands out that many turns; the next waits for a release", async () => {
    const creates = SlowCreates.forMode("parallel");
    const share = parallelFileShare(16);
    for (let i = 0; i < share; i++) expect(creates.acquire()).toBeUndefined();
    const waiting = creates.acquire();
    expect(waiting).toBeInstanceOf(Promise);
    let turned = false;
    void waiting?.then(() => {
      turned = true;
    });
    await Promise.resolve();
    expect(turned).toBe(false);
    creates.release();
    await waiting;
    expect(turned).toBe(true);
  });
});
