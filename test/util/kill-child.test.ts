// kill-child.ts: a child whose spawn failed for lack of file descriptors has a handle with
// pid 0, and child.kill() then signals the whole process group (kill(0, …)): on 2026-12-05 it
// killed a CI run (the test runner was in the group of decompress()'s test). Each script runs
// in a process group of its own beside a sibling, which must outlive it.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { killChild } from "../../src/util/kill-child.ts";
import { runInOwnProcessGroup } from "../harness/own-process-group.ts";

const source = (path: string) =>
  JSON.stringify(fileURLToPath(new URL(`../../src/${path}`, import.meta.url)));

const scratch = mkdtempSync(join(tmpdir(), "dsfetch-kill-child-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Writes `body` as a script that first uses up every file descriptor it may open. */
function outOfDescriptors(label: string, body: string): string {
  const script = join(scratch, `${label}.ts`);
  writeFileSync(
    script,
    `import { openSync } from "node:fs";
     const fds = [];
     try { for (;;) fds.push(openSync("/dev/null", "r")); } catch {}
     ${body}`,
  );
  return script;
}

describe.runIf(process.platform === "linux")("killChild", () => {
  it("a child whose spawn failed (out of file descriptors) is not signalled, and nor is our process group", async () => {
    const script = outOfDescriptors(
      "kill-emfile",
      `import { spawn } from "node:child_process";
       import { killChild } from ${source("util/kill-child.ts")};
       const child = spawn("sleep", ["30"], { stdio: ["pipe", "pipe", "pipe"] });
       let error = "none";
       child.on("error", (e) => { error = e.code; });
       // At once, before the spawn's "error" event: the moment child.kill() means kill(0).
       const sent = killChild(child, "SIGKILL");
       setTimeout(() => console.log(JSON.stringify({ pid: child.pid ?? null, sent, error })), 50);`,
    );
    const run = await runInOwnProcessGroup(script, { runs: 3 });
    expect(run).toMatchObject({ code: 0, signal: null, groupAlive: true });
    expect(run.lines.map((line) => JSON.parse(line))).toEqual(
      Array(3).fill({ pid: null, sent: false, error: "EMFILE" }),
    );
  });

  it("a running child is signalled; one that has exited is not (its pid may be another's by now)", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    const ended = new Promise((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
    expect(killChild(child, "SIGKILL")).toBe(true);
    expect(await ended).toBe("SIGKILL");
    expect(killChild(child, "SIGKILL")).toBe(false);
  });
});
