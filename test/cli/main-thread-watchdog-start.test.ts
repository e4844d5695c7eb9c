// A watchdog thread that cannot be had (a pids limit, no memory: `new Worker` throws, or the
// thread dies at start) must not fail the command (found in review: the throw failed a
// dataset that had downloaded); it says so instead.
import { afterEach, describe, expect, it, vi } from "vitest";

const worker = vi.hoisted(() => ({ mode: "throw" as "throw" | "error" }));

vi.mock("node:worker_threads", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:worker_threads")>();
  const { EventEmitter } = await import("node:events");
  class FailingWorker extends EventEmitter {
    constructor() {
      super();
      if (worker.mode === "throw") {
        throw Object.assign(new Error("ERR_WORKER_INIT_FAILED: EAGAIN"), {
          code: "ERR_WORKER_INIT_FAILED",
        });
      }
      setTimeout(() => this.emit("error", new Error("the thread died")), 10);
    }
    unref(): void {}
    terminate(): Promise<number> {
      return Promise.resolve(0);
    }
  }
  return { ...actual, Worker: FailingWorker };
});

const { startMainThreadWatchdog, stopMainThreadWatchdog } = await import(
  "../../src/cli/main-thread-watchdog.ts"
);

afterEach(() => {
  stopMainThreadWatchdog();
  vi.restoreAllMocks();
});

describe("a watchdog thread that cannot start", () => {
  for (const mode of ["throw", "error"] as const) {
    it(`(${mode === "throw" ? "new Worker throws" : "the thread fails at start"}): a warning, and the command goes on`, async () => {
      worker.mode = mode;
      const written: string[] = [];
      vi.spyOn(process.stderr, "write").mockImplementation((chunk: unknown) => {
        written.push(String(chunk));
        return true;
      });
      const watchdog = startMainThreadWatchdog({ boundMs: 1000, json: false });
      await watchdog.running;
      expect(written.join("")).toMatch(
        /^dsfetch: warning: the main thread is not watched \(its watchdog thread did not start: (ERR_WORKER_INIT_FAILED: EAGAIN|the thread died)\); a call stuck on hung storage will hang this process\n$/,
      );
      watchdog.stop();
    });
  }
});
