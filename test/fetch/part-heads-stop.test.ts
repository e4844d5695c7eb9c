// Learning a multipart object's part boundaries by a HEAD per part (16 at a time): once one
// fails for good, the HEADs still in flight are stopped, not left to go through their retries
// (~20 s of requests to a store that was likely throttling, after the answer was known:
// second review, 2026-12-07). A fake store: its answers and their timing are the test.
import { describe, expect, it } from "vitest";
import { S3HttpError } from "../../src/fetch/object-get.ts";
import { learnParts, type PartGetter } from "../../src/fetch/parts.ts";

const MiB = 1024 * 1024;

describe("part HEADs after one failed", () => {
  it("a part refused (403): the HEADs in flight are aborted, none starts after, size-only", async () => {
    // 40 parts of 8 MiB but the last part's HEAD says 9 MiB: the layout cannot be inferred
    // from the first and last, so every part is asked for.
    const parts = 40;
    const bytes = 39 * 8 * MiB + 5 * MiB;
    const started: number[] = [];
    let aborted = 0;
    let afterFailure = 0;
    let failedAt: number | undefined;
    const getter: PartGetter = {
      head: async (request) => {
        const n = request.partNumber ?? 0;
        if (n === 1) return answer(8 * MiB, parts);
        if (n === parts) return answer(9 * MiB, parts);
        if (failedAt !== undefined) afterFailure++;
        started.push(n);
        if (n === 5) {
          // Refused once the others are in flight.
          await new Promise((resolve) => setTimeout(resolve, 50));
          failedAt = started.length;
          throw new S3HttpError(403, "AccessDenied", "refused", {});
        }
        // The others: slow, until stopped.
        return await new Promise((resolve, reject) => {
          const timer = setTimeout(() => resolve(answer(8 * MiB, parts)), 10_000);
          request.signal?.addEventListener(
            "abort",
            () => {
              aborted++;
              clearTimeout(timer);
              reject(request.signal?.reason);
            },
            { once: true },
          );
        });
      },
    };
    const source = {
      bucket: "b",
      key: "k",
      versionId: undefined,
      etag: "0123456789abcdef0123456789abcdef-40",
      bytes,
    };
    const spans = await learnParts(getter, source, parts, { retries: 0 });
    expect(spans).toBeUndefined();
    // Parts 2-17 were in flight (part 1's size was known): all but 5 stopped, and no HEAD
    // began after it failed.
    expect(started.length).toBe(16);
    expect(aborted).toBe(15);
    expect(afterFailure).toBe(0);
  });
});

function answer(length: number, count: number) {
  return {
    status: 200,
    headers: { "content-length": String(length), "x-amz-mp-parts-count": String(count) },
  };
}
