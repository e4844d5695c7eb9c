// storage-probe.ts: does shared storage answer at all? A FIFO stands in for a call that never
// returns (an NFS mount whose server is gone): opening it for writing waits for a reader.

import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeProbeFile, PROBE_FILE, storageAnswers } from "../../src/volumes/storage-probe.ts";
import { processesNaming } from "../harness/children.ts";

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-probe-"));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A storage root whose probe file is a FIFO: the probe blocks there. */
async function hungRoot(label: string): Promise<{ root: string; dataRoot: string }> {
  const root = await mkdtemp(join(scratch, `${label}-`));
  const dataRoot = join(root, "t", "data");
  await mkdir(join(dataRoot, ".dsfetch"), { recursive: true });
  execFileSync("mkfifo", [join(dataRoot, ".dsfetch", PROBE_FILE)]);
  return { root, dataRoot };
}

// With /bin/sh (the default), and with Node for images without a shell.
describe.each([
  ["/bin/sh", undefined],
  ["node (no shell)", join(tmpdir(), "no-such-shell-for-dsfetch")],
])("probe via %s", (_label, shell) => {
  it("storage that answers: true; the probe makes nothing (dsfetch makes .dsfetch itself, with the team's modes), and opens an existing probe file without writing to it", async () => {
    const root = await mkdtemp(join(scratch, "ok-"));
    const dataRoot = join(root, "t", "data");
    expect(await storageAnswers(root, dataRoot, 10_000, { shell })).toBe(true);
    // Its mkdir -p made the team, data and .dsfetch directories under the umask, which other
    // users of a team's storage could not write in (review, 2026-12-07).
    expect(await readdir(root)).toEqual([]);
    await makeProbeFile(dataRoot);
    expect(await readdir(join(dataRoot, ".dsfetch"))).toEqual([PROBE_FILE]);
    expect(await storageAnswers(root, dataRoot, 10_000, { shell })).toBe(true);
    expect((await stat(join(dataRoot, ".dsfetch", PROBE_FILE))).size).toBe(0);
    expect(await readdir(join(dataRoot, ".dsfetch"))).toEqual([PROBE_FILE]);
  });

  it("a root that does not exist: true (it answered; storage-check.ts says what is wrong), and nothing created", async () => {
    const missing = join(scratch, "not-mounted");
    expect(await storageAnswers(missing, join(missing, "t", "data"), 10_000, { shell })).toBe(true);
    await expect(readdir(missing)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("storage that never answers: false once the bound has passed, and the probe is killed", async () => {
    const { root, dataRoot } = await hungRoot("hung");
    const started = performance.now();
    expect(await storageAnswers(root, dataRoot, 500, { shell })).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(450);
    // Killed: nothing holds the FIFO open for writing any more (a reader would not block).
    await expect.poll(() => processesNaming(dataRoot), { timeout: 3000 }).toBe("");
  });
});
