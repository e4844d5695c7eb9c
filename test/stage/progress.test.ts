// The progress events of one dataset (src/stage/progress.ts).
import { afterEach, describe, expect, it, vi } from "vitest";
import type { DsfetchEvent } from "../../src/events.ts";
import { ProgressTracker } from "../../src/stage/progress.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("ProgressTracker", () => {
  it("its last event has every object counted, also when the bytes were all said before", () => {
    // One clock reading for all: the first count is said at once (250 ms since nothing was
    // said), the rest within the same 250 ms is not.
    vi.spyOn(performance, "now").mockReturnValue(10_000);
    const events: DsfetchEvent[] = [];
    const tracker = new ProgressTracker("folder", 300, 3, (event) => events.push(event));
    tracker.addBytes(300);
    expect(events).toHaveLength(1);
    tracker.addObject();
    tracker.addObject();
    tracker.addObject();
    expect(events).toHaveLength(1);
    tracker.finish();
    expect(events.at(-1)).toMatchObject({
      type: "progress",
      bytes: 300,
      objects: 3,
      totalObjects: 3,
    });
    // Nothing said twice.
    tracker.finish();
    expect(events).toHaveLength(2);
  });
});
