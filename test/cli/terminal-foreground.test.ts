import { execFileSync, spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { SignalRouter } from "../../src/cli/signals.ts";
import { inTerminalForeground } from "../../src/cli/terminal-foreground.ts";

// /proc/<pid>/stat: pid (comm) state ppid pgrp session tty_nr tpgid …
const stat = (comm: string, pgrp: number, ttyNr: number, tpgid: number) =>
  `4242 (${comm}) S 1 ${pgrp} ${pgrp} ${ttyNr} ${tpgid} 4194560 0 0 0 0`;

describe("inTerminalForeground", () => {
  it("true only with a terminal whose foreground group is ours", () => {
    expect(inTerminalForeground(stat("node", 4242, 34816, 4242))).toBe(true);
    expect(inTerminalForeground(stat("node", 4242, 34816, 5000))).toBe(false);
    expect(inTerminalForeground(stat("node", 4242, 0, -1))).toBe(false);
  });

  it("reads the fields after the last parenthesis (a command name may hold ') 1 2 3')", () => {
    expect(inTerminalForeground(stat("a) 9 9 9 9 9", 4242, 34816, 4242))).toBe(true);
    expect(inTerminalForeground(stat("a) 9 9 9 9 9", 4242, 34816, 77))).toBe(false);
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
        `import { inTerminalForeground } from ${JSON.stringify(source)}; console.log(inTerminalForeground());`,
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
    );
    expect(printed.trim()).toBe("false");
  });
});

describe("SignalRouter while a command runs", () => {
  async function routed(signal: NodeJS.Signals, fromTerminal: boolean) {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    await new Promise((resolve) => child.once("spawn", resolve));
    const router = new SignalRouter(() => fromTerminal);
    router.forwardTo(child);
    router.handle(signal);
    const ended = await Promise.race([
      new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_c, s) => resolve(s))),
      new Promise<"alive">((resolve) => setTimeout(() => resolve("alive"), 300)),
    ]);
    child.kill("SIGKILL");
    return { ended, aborted: router.signal.aborted };
  }

  it("a terminal's SIGINT or SIGHUP is left to the terminal (the command had it already)", async () => {
    expect(await routed("SIGINT", true)).toEqual({ ended: "alive", aborted: false });
    expect(await routed("SIGHUP", true)).toEqual({ ended: "alive", aborted: false });
  });

  it("SIGTERM is always forwarded, and SIGINT when no terminal sent it", async () => {
    expect(await routed("SIGTERM", true)).toEqual({ ended: "SIGTERM", aborted: false });
    expect(await routed("SIGINT", false)).toEqual({ ended: "SIGINT", aborted: false });
  });
});
