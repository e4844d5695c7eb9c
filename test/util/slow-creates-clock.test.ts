// SlowCreates (util/slow-creates.ts) with its real clocks: creates slowed by a busy CPU are not
// taken for network storage. A streamed archive's extraction shares the cores with the
// download, the hash and often a local S3 server; the time it waited for a CPU used to count
// as waiting for storage, and a local disk went to 36 threads of parallel writes.
//
// Each case runs in a child pinned to one CPU (taskset), with or without two busy loops
// pinned to the same CPU.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const scratch = mkdtempSync(join(tmpdir(), "dsfetch-slow-creates-clock-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const source = JSON.stringify(
  fileURLToPath(new URL("../../src/util/slow-creates.ts", import.meta.url)),
);

/**
 * Times 6 windows of "creates": `spin` burns 400 us of this thread's CPU each (a local disk
 * working in the kernel), `wait` sleeps 10 ms each (a round trip to a file server such as EFS).
 * Not 1 ms, nor 3: the CPU is not always quiet (vitest runs two files at once, beside MinIO),
 * and the wait for a CPU after each wake-up is busy time; 1 ms creates were once taken for a
 * busy local disk in CI, and 3 ms ones once too (session 46: more than half of a confirming
 * window spent on the run queue).
 */
const script = join(scratch, "creates.ts");
writeFileSync(
  script,
  `import { SlowCreates, WINDOW } from ${source};
   const mode = process.argv[2];
   const creates = new SlowCreates(250);
   const cpuUs = () => { const u = process.threadCpuUsage(); return u.user + u.system; };
   const sleeper = new Int32Array(new SharedArrayBuffer(4));
   const started = performance.now();
   const cpuStarted = cpuUs();
   for (let i = 0; i < 6 * WINDOW; i++) {
     creates.begin();
     if (mode === "spin") { const end = cpuUs() + 400; while (cpuUs() < end) {} }
     else Atomics.wait(sleeper, 0, 0, 10);
     creates.end();
     creates.fileDone();
   }
   const wallUs = (performance.now() - started) * 1000;
   console.log(JSON.stringify({ slow: creates.slow, cpuShare: (cpuUs() - cpuStarted) / wallUs }));`,
);

/** The first CPU this process may run on. */
function firstCpu(): string {
  const out = execFileSync("taskset", ["-cp", String(process.pid)], { encoding: "utf8" });
  const list = out.slice(out.lastIndexOf(":") + 1).trim();
  const first = /^\d+/.exec(list)?.[0];
  if (first === undefined) throw new Error(`cannot read this process's CPUs: ${out}`);
  return first;
}

async function runPinned(
  mode: "spin" | "wait",
  competitors: number,
): Promise<{ slow: boolean; cpuShare: number }> {
  const cpu = firstCpu();
  const busy = Array.from({ length: competitors }, () =>
    spawn("taskset", ["-c", cpu, process.execPath, "-e", "for (;;) {}"], { stdio: "ignore" }),
  );
  try {
    const child = spawn("taskset", ["-c", cpu, process.execPath, script, mode], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    expect(code).toBe(0);
    return JSON.parse(out.trim()) as { slow: boolean; cpuShare: number };
  } finally {
    for (const child of busy) child.kill("SIGKILL");
  }
}

describe.runIf(process.platform === "linux")("SlowCreates with its real clocks", () => {
  it("creates slowed by other work on the same CPU stay serial (waiting for a CPU is not waiting for storage)", async () => {
    const run = await runPinned("spin", 2);
    // The case is what it says: the busy loops took most of the CPU (the old clock, CPU time
    // alone, saw ~2/3 of each create as waiting and went parallel).
    expect(run.cpuShare).toBeLessThan(0.5);
    expect(run.slow).toBe(false);
  });

  it("creates that wait (a round trip each) are still found slow, on a quiet CPU", async () => {
    const run = await runPinned("wait", 0);
    expect(run.slow).toBe(true);
  });
});
