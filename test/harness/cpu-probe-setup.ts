// DSFETCH_TEST_CPU_LOG=<file> (vitest.config.ts adds this setup file then): one JSON line per
// test file with the CPU it used, in seconds: `self` (its vitest worker: the tests' own work,
// their threads, imports) and `children` (every process it started and waited for: dsfetch
// runs, tar, xz..., theirs included), and `wall`. The run is bound by CPU, not by waits
// (README, Tests): this is what to look at before cutting a test's time. Linux (/proc) only.
//
//   DSFETCH_TEST_CPU_LOG=/tmp/cpu.jsonl npx vitest run test/fetch/
import { appendFileSync, readFileSync } from "node:fs";
import { afterAll, expect } from "vitest";

/** This process's CPU and its waited-for children's, in clock ticks (proc(5): fields 14-17). */
function ticks(): { self: number; children: number } {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number);
  const [utime = 0, stime = 0, cutime = 0, cstime = 0] = fields.slice(11, 15);
  return { self: utime + stime, children: cutime + cstime };
}

// Clock ticks per second: 100 on Linux's usual builds (getconf CLK_TCK).
const TICKS = 100;
const start = ticks();
const startedAt = performance.now();

afterAll(() => {
  const log = process.env.DSFETCH_TEST_CPU_LOG;
  if (log === undefined || log === "") return;
  const end = ticks();
  const file = expect.getState().testPath ?? "?";
  const row = {
    file: file.startsWith(process.cwd()) ? file.slice(process.cwd().length + 1) : file,
    self: (end.self - start.self) / TICKS,
    children: (end.children - start.children) / TICKS,
    wall: Math.round(performance.now() - startedAt) / 1000,
  };
  appendFileSync(log, `${JSON.stringify(row)}\n`);
});
