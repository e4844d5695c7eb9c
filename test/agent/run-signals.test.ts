// `run` and the signals of a terminal: a Ctrl-C reaches the command once, not twice
// (the terminal sends it to the whole foreground process group, dsfetch's command included).

import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, CLI_ENTRY } from "../harness/cli.ts";
import { ctrlCOnTerminal } from "../harness/pty.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

// Counts its SIGINTs for 1.5 s after the first, then exits with 40 + that count (40: none
// within 5 s).
const COUNTING_COMMAND = [
  "let n = 0;",
  "setTimeout(() => { if (n === 0) { console.log('sigints=0'); process.exit(40); } }, 5000);",
  "process.on('SIGINT', () => { n += 1; if (n === 1) setTimeout(() => { console.log('sigints=' + n); process.exit(40 + n); }, 1500); });",
  "console.log('command started');",
  "setInterval(() => {}, 1000);",
].join(" ");

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-run-signals-"));
  bucket = await createBucket("runsig");
  await putObject(bucket, "labels/labels.txt", "cat\ndog\n");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function runArgs(name: string): Promise<string[]> {
  const storage = await mkdtemp(join(root, `${name}-`));
  const datasets = join(storage, "datasets.json");
  await writeFile(datasets, JSON.stringify([{ uri: `s3://${bucket}/labels/` }]));
  return [
    "run",
    "--datasets",
    datasets,
    "--storage-root",
    storage,
    "--team",
    "ml",
    "--mount-root",
    join(storage, "mnt"),
    "--",
    process.execPath,
    "-e",
    COUNTING_COMMAND,
  ];
}

describe("run: signals", () => {
  it("a Ctrl-C on the terminal reaches the command once (not forwarded a second time)", async () => {
    const args = await runArgs("tty");
    const result = await ctrlCOnTerminal(
      [process.execPath, CLI_ENTRY, ...args],
      "command started",
      baseEnv(testEnv()),
    );
    expect(result.output).toContain("sigints=1");
    expect(result.exitCode).toBe(41);
  });

  it("on the terminal, a command in a process group of its own (setsid) gets the Ctrl-C from dsfetch", async () => {
    const args = await runArgs("own-group");
    const at = args.indexOf("--");
    // `setsid` puts the command in a session (and group) of its own, then execs it: the
    // terminal's SIGINT reaches only dsfetch, which must pass it on. (Not `timeout`: it
    // passes a SIGINT on to its command, then to its whole group again.)
    const own = [...args.slice(0, at + 1), "setsid", ...args.slice(at + 1)];
    const result = await ctrlCOnTerminal(
      [process.execPath, CLI_ENTRY, ...own],
      "command started",
      baseEnv(testEnv()),
    );
    expect(result.output).toContain("sigints=1");
    expect(result.exitCode).toBe(41);
  });

  it("on the terminal, a SIGINT sent to dsfetch alone is not passed on (taken for the terminal's), unless DSFETCH_ALWAYS_FORWARD_SIGINT=1", async () => {
    const dropped = await ctrlCOnTerminal(
      [process.execPath, CLI_ENTRY, ...(await runArgs("kill-default"))],
      "command started",
      baseEnv(testEnv()),
      "kill",
    );
    expect(dropped.output).toContain("sigints=0");
    expect(dropped.exitCode).toBe(40);
    const forwarded = await ctrlCOnTerminal(
      [process.execPath, CLI_ENTRY, ...(await runArgs("kill-always"))],
      "command started",
      baseEnv({ ...testEnv(), DSFETCH_ALWAYS_FORWARD_SIGINT: "1" }),
      "kill",
    );
    expect(forwarded.output).toContain("sigints=1");
    expect(forwarded.exitCode).toBe(41);
  });

  it("a SIGINT sent to dsfetch alone (no terminal) is forwarded to the command, once", async () => {
    const args = await runArgs("pipe");
    // A session of its own: no controlling terminal, whatever the test runner has.
    const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
      env: baseEnv(testEnv()),
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (chunk.includes("command started")) child.kill("SIGINT");
    });
    child.stderr.resume();
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(stdout).toContain("sigints=1");
    expect(code).toBe(41);
  });
});
