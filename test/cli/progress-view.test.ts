// Progress on stderr that is not a terminal: plain lines, the end of each transfer once (an
// archive's and a refreshed object's end came twice: exploratory tester, 2026-12-08).
import { describe, expect, it } from "vitest";
import { ProgressView } from "../../src/cli/progress-view.ts";

const progress = (dataset: string, bytes: number, totalBytes: number, rate: number) =>
  ({
    type: "progress",
    dataset,
    bytes,
    totalBytes,
    objects: 1,
    totalObjects: 1,
    bytesPerSecond: rate,
  }) as const;

describe("ProgressView, plain lines", () => {
  it("says a transfer's end once, per dataset; a transfer started again ends again", () => {
    const lines: string[] = [];
    const view = new ProgressView((text) => lines.push(text), false);
    view.handle(progress("a", 10, 100, 1000));
    view.handle(progress("a", 100, 100, 2000));
    view.handle(progress("a", 100, 100, 1500));
    view.handle(progress("b", 50, 50, 1000));
    view.handle(progress("b", 50, 50, 900));
    expect(lines).toEqual(["a: 100% 100 B/100 B 2.0 KiB/s\n", "b: 100% 50 B/50 B 1000 B/s\n"]);
    // Streamed again from its start (a multipart layout learned anew: stage/expand.ts).
    view.handle(progress("a", 5, 100, 100));
    view.handle(progress("a", 100, 100, 300));
    expect(lines).toHaveLength(3);
  });
});
