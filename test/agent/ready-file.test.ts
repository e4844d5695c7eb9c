import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prepareReadyFile, readReadyFile, writeReadyFile } from "../../src/agent/ready-file.ts";
import { deadPid } from "../harness/children.ts";
import { runCli } from "../harness/cli.ts";

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-ready-file-"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const ready = (pid: number) => ({
  ready: true as const,
  pid,
  at: new Date().toISOString(),
  datasets: [],
});

describe("a ready file", () => {
  it("of a live sidecar says ready; of one that died on this host, not", async () => {
    const live = join(root, "live.json");
    await writeReadyFile(live, ready(process.pid));
    expect(await readReadyFile(live)).toEqual({ state: "ready" });
    const dead = join(root, "dead.json");
    const pid = deadPid();
    await writeReadyFile(dead, ready(pid));
    expect(await readReadyFile(dead)).toEqual({
      state: "absent",
      why: `says ready, but its sidecar (pid ${pid}) is gone: waiting for a new one to stage the datasets`,
    });
  });

  it("dsfetch wait does not go on on a dead sidecar's file: it waits, then times out (exit 9)", async () => {
    const file = join(root, "wait-dead.json");
    await writeReadyFile(file, ready(deadPid()));
    const result = await runCli(["wait", "--ready-file", file, "--timeout", "1s"]);
    expect(result.code, result.stderr).toBe(9);
    // Said, not only decided (review, 2026-12-05: "did not say ready", nothing more).
    expect(result.stderr).toContain(`wait: ${file} says ready, but its sidecar (pid `);
    expect(result.stderr).toMatch(/did not say ready within 1s \(.* says ready, but its sidecar/);
    const live = join(root, "wait-live.json");
    await writeReadyFile(live, ready(process.pid));
    expect((await runCli(["wait", "--ready-file", live, "--timeout", "1s"])).code).toBe(0);
  });

  it("that is not one (a directory, garbage, another JSON): wait says so once, and times out", async () => {
    const directory = join(root, "a-directory");
    await mkdir(directory);
    const garbage = join(root, "garbage.json");
    await writeFile(garbage, "garbage");
    const other = join(root, "other.json");
    await writeFile(other, '{"status": "ok"}');
    for (const [path, why] of [
      [directory, "is a directory, not a ready file"],
      [garbage, "is not a ready file (not JSON)"],
      [other, 'is not a ready file (no "ready" field)'],
    ] as const) {
      const result = await runCli(["wait", "--ready-file", path, "--timeout", "1s"]);
      expect(result.code, result.stderr).toBe(9);
      expect(
        result.stderr.split("\n").filter((line) => line === `wait: ${path} ${why}`),
      ).toHaveLength(1);
    }
    expect(await readReadyFile(join(root, "not-yet.json"))).toEqual({ state: "absent" });
    // A sidecar given a directory says so before staging (it said "rm returned EISDIR").
    await expect(prepareReadyFile(directory)).rejects.toMatchObject({
      code: "USAGE",
      message: `--ready-file ${directory}: is a directory`,
    });
  });
});
