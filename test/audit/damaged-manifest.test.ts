// README audit, 2026-12-07: a published dataset whose manifest is damaged (cut short) was
// refused by `fetch` and `plan` with "dsfetch did not publish it (no manifest of dsfetch's
// names it …)", while `list` said its manifest "is damaged". Both name the damaged manifest
// now, and say what to do.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-audit-damaged-"));
  bucket = await createBucket("audit-damaged");
  await putObject(bucket, "labels.txt", "cat\ndog\n");
});

afterAll(async () => {
  execFileSync("chmod", ["-R", "u+w", root]);
  await rm(root, { recursive: true, force: true });
});

interface Entry {
  name: string;
  path?: string;
  error?: { code: string; message: string; hint?: string };
}

async function run(command: "fetch" | "plan", storage: string) {
  const result = await runCli(
    [command, "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
    { env: testEnv(), stdin: JSON.stringify([{ uri: `s3://${bucket}/labels.txt` }]) },
  );
  const entries = (JSON.parse(result.stdout) as { datasets: Entry[] }).datasets;
  return { ...result, entry: entries[0] };
}

describe("a published dataset whose manifest was cut short", () => {
  it("fetch and plan: PATH_TAKEN (exit 7) naming the damaged manifest and what to do; the hint works", async () => {
    const storage = await mkdtemp(join(root, "storage-"));
    const first = await run("fetch", storage);
    expect(first.code, first.stderr).toBe(0);
    const path = join(storage, "ml", "data", "labels.txt");
    const manifest = join(storage, "ml", "data", ".dsfetch", "manifests", "labels.txt.json");
    expect(first.entry?.path).toBe(path);
    const whole = await readFile(manifest, "utf8");
    await truncate(manifest, Math.floor(whole.length / 2));

    for (const command of ["fetch", "plan"] as const) {
      const { code, entry, stderr } = await run(command, storage);
      expect(code, `${command}: ${stderr}`).toBe(7);
      expect(entry?.error, command).toMatchObject({
        code: "PATH_TAKEN",
        message: `labels.txt: ${path} is already there, but its manifest ${manifest} is damaged (not a manifest dsfetch can read: cut short or edited), so dsfetch cannot tell what it holds; dsfetch never replaces data it cannot tell it published`,
        hint: `once no job uses it, remove the directory and its manifest: chmod -R u+w '${path}' && rm -r '${path}' '${manifest}'; the next run stages it again (or move both away, to keep them)`,
      });
      expect(entry?.error?.message, command).not.toContain("did not publish it");
    }
    // Left as it was.
    expect(await readFile(join(path, "labels.txt"), "utf8")).toBe("cat\ndog\n");

    // The hint, followed: the next fetch stages it again.
    execFileSync("chmod", ["-R", "u+w", path]);
    await rm(path, { recursive: true });
    await rm(manifest);
    const again = await run("fetch", storage);
    expect(again.code, again.stderr).toBe(0);
    expect(existsSync(manifest)).toBe(true);
  });
});
