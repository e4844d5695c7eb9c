// The share of libuv's thread pool that parallel file writes may hold (util/thread-pool.ts),
// and the turns SlowCreates hands out to a folder's parallel writes.
import { describe, expect, it } from "vitest";
import { SlowCreates } from "../../src/util/slow-creates.ts";
import { parallelFileShare, threadPoolSize } from "../../src/util/thread-pool.ts";

describe("thread pool share", () => {
  it("reads UV_THREADPOOL_SIZE as libuv does (atoi; unset 4, 0 or no number 1, at most 1024)", () => {
    expect(threadPoolSize({})).toBe(4);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "36" })).toBe(36);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: " 12threads" })).toBe(12);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "" })).toBe(1);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "0" })).toBe(1);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "many" })).toBe(1);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "5000" })).toBe(1024);
    expect(threadPoolSize({ UV_THREADPOOL_SIZE: "-3" })).toBe(1024);
  });

  it("leaves 4 threads to everything else and splits the rest between 2 datasets", () => {
    expect(parallelFileShare(16, 36)).toBe(16); // the CLI's pool
    expect(parallelFileShare(16, 24)).toBe(10);
    expect(parallelFileShare(16, 6)).toBe(1);
    expect(parallelFileShare(16, 5)).toBe(0); // none: "auto" stays serial
    expect(parallelFileShare(16, 4)).toBe(0); // libuv's default, in a program using the library
    expect(parallelFileShare(16, 1)).toBe(0);
  });

  it("SlowCreates hands out that many turns; the next waits for a release", async () => {
    const creates = SlowCreates.forMode("parallel");
    const share = Math.max(1, parallelFileShare(16));
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
