import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { SignalRouter } from "../../src/cli/signals.ts";
import { inTerminalForeground, statFields } from "../../src/cli/terminal-foreground.ts";

// /proc/<pid>/stat: pid (comm) state ppid pgrp session tty_nr tpgid …
const stat = (comm: string, pgrp: number, ttyNr: number, tpgid: number) =>
  `4242 (${comm}) S 1 ${pgrp} ${pgrp} ${ttyNr} ${tpgid} 4194560 0 0 0 0`;

describe("inTerminalForeground", () => {
  it("true only with a terminal whose foreground group is ours", () => {
    expect(inTerminalForeground(statFields(stat("node", 4242, 34816, 4242)))).toBe(true);
    expect(inTerminalForeground(statFields(stat("node", 4242, 34816, 5000)))).toBe(false);
    expect(inTerminalForeground(statFields(stat("node", 4242, 0, -1)))).toBe(false);
    expect(inTerminalForeground(statFields("garbage"))).toBe(false);
  });

  it("reads the fields after the last parenthesis (a command name may hold ') 1 2 3')", () => {
    expect(statFields(stat("a) 9 9 9 9 9", 4242, 34816, 77))).toEqual({
      pgrp: 4242,
      ttyNr: 34816,
      tpgid: 77,
    });
  });

  it("false for a process without a controlling terminal (its own session: setsid)", () => {
    const source = new URL("../../src/cli/terminal-foreground.ts", import.meta.url).href;
    const printed = execFileSync(
      "setsid",
      [
        "-w",
        process.execPath,
        "--input-type=module",
        "-e",
        `import { inTerminalForeground, statFields } from ${JSON.stringify(source)}; import { readFileSync } from "node:fs"; console.log(inTerminalForeground(statFields(readFileSync("/proc/self/stat", "utf8"))));`,
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
    );
    expect(printed.trim()).toBe("false");
  });
});

describe("SignalRouter while a command runs", () => {
  async function started(): Promise<ChildProcess> {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    await new Promise((resolve) => child.once("spawn", resolve));
    return child;
  }
  const exited = (child: ChildProcess) =>
    new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_c, s) => resolve(s)));

  it("a SIGINT the command had from the terminal is not sent again", async () => {
    const child = await started();
    const asked: number[] = [];
    const router = new SignalRouter((pid) => {
      asked.push(pid);
      return true;
    });
    router.forwardTo(child);
    router.handle("SIGINT");
    const ended = await Promise.race([
      exited(child),
      new Promise<"alive">((resolve) => setTimeout(() => resolve("alive"), 300)),
    ]);
    child.kill("SIGKILL");
    expect(ended).toBe("alive");
    expect(asked).toEqual([child.pid]);
    expect(router.signal.aborted).toBe(false);
  });

  it("SIGTERM and SIGHUP are always forwarded, and a SIGINT the command did not have", async () => {
    for (const [signal, fromTerminal] of [
      ["SIGTERM", true],
      ["SIGHUP", true],
      ["SIGINT", false],
    ] as const) {
      const child = await started();
      const router = new SignalRouter(() => fromTerminal);
      router.forwardTo(child);
      const ending = exited(child);
      router.handle(signal);
      expect(await ending).toBe(signal);
      expect(router.signal.aborted).toBe(false);
    }
  });
});
