import { describe, expect, it } from "vitest";
import { untilOrAborted } from "../../src/util/until-or-aborted.ts";

describe("untilOrAborted", () => {
  it("resolves with the wait when nothing aborts it, or without a signal", async () => {
    const controller = new AbortController();
    await expect(untilOrAborted(Promise.resolve(), controller.signal)).resolves.toBeUndefined();
    await expect(untilOrAborted(Promise.resolve())).resolves.toBeUndefined();
    // A wait that fails is that failure.
    const failed = new Error("write failed");
    await expect(untilOrAborted(Promise.reject(failed), controller.signal)).rejects.toBe(failed);
  });

  it("throws the reason as soon as the signal fires, without waiting for the rest", async () => {
    const controller = new AbortController();
    const reason = new Error("cancelled");
    setTimeout(() => controller.abort(reason), 10);
    await expect(untilOrAborted(new Promise(() => {}), controller.signal)).rejects.toBe(reason);
  });

  it("throws at once when already aborted; the wait failing afterwards is no unhandled rejection", async () => {
    const reason = new Error("cancelled");
    const unhandled: unknown[] = [];
    const onUnhandled = (error: unknown) => unhandled.push(error);
    process.on("unhandledRejection", onUnhandled);
    try {
      let fail: (error: Error) => void = () => {};
      const wait = new Promise<void>((_, reject) => {
        fail = reject;
      });
      await expect(untilOrAborted(wait, AbortSignal.abort(reason))).rejects.toBe(reason);
      fail(new Error("failed by the abort"));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
