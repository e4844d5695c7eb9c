// The progress events of one dataset (src/stage/progress.ts).
import { describe, expect, it } from "vitest";
import type { DsfetchEvent } from "../../src/events.ts";
import { ProgressTracker } from "../../src/stage/progress.ts";

describe("ProgressTracker", () => {
  it("its last event has every object counted, also when the bytes were all said before", () => {
    const events: DsfetchEvent[] = [];
    const tracker = new ProgressTracker("folder", 300, 3, (event) => events.push(event));
    // The first count is said at once; the rest within 250 ms is not.
    tracker.addBytes(300);
    tracker.addObject();
    tracker.addObject();
    tracker.addObject();
    tracker.finish();
    const last = events.at(-1);
    expect(last).toMatchObject({ type: "progress", bytes: 300, objects: 3, totalObjects: 3 });
    // Nothing said twice.
    tracker.finish();
    expect(events).toHaveLength(2);
  });
});
