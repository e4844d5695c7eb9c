// BeatWatch: when the main thread's heartbeat counts as stuck (cli/main-thread-watchdog.ts).
import { describe, expect, it } from "vitest";
import { BeatWatch } from "../../src/cli/beat-watch.ts";

describe("BeatWatch", () => {
  it("a beat that stands still for the bound is stuck; one that moves is not", () => {
    const watch = new BeatWatch(1000, 100, 0, 0);
    for (let t = 100; t < 1000; t += 100) expect(watch.check(0, t)).toBe(false);
    expect(watch.check(0, 1000)).toBe(true);

    const moving = new BeatWatch(1000, 100, 0, 0);
    for (let t = 100; t <= 5000; t += 100) expect(moving.check(t, t)).toBe(false);
  });

  it("a beat after a long stillness starts the count again", () => {
    const watch = new BeatWatch(1000, 100, 0, 0);
    for (let t = 100; t <= 900; t += 100) watch.check(0, t);
    expect(watch.check(1, 1000)).toBe(false);
    expect(watch.stoodStillMs).toBe(0);
    for (let t = 1100; t < 2000; t += 100) expect(watch.check(1, t)).toBe(false);
    expect(watch.check(1, 2000)).toBe(true);
  });

  it("time the watcher itself did not run (a paused process) counts as two checks at most", () => {
    const watch = new BeatWatch(1000, 100, 0, 0);
    // SIGSTOP for an hour: the main thread could not beat either.
    expect(watch.check(0, 3_600_000)).toBe(false);
    expect(watch.stoodStillMs).toBe(200);
    // It beats on its first turn after the pause.
    expect(watch.check(1, 3_600_100)).toBe(false);
  });

  it("a clock that goes backwards counts nothing", () => {
    const watch = new BeatWatch(1000, 100, 0, 500);
    expect(watch.check(0, 400)).toBe(false);
    expect(watch.stoodStillMs).toBe(0);
  });
});
