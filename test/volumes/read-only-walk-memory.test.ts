// Publishing makes the dataset read-only (volumes/permissions.ts makeReadOnly), walking the
// tree. A directory's entries were read as one array of Dirents: a folder of 400,000 objects
// in one directory (COCO's train2017 has 118,000) made them all at once at the end of its
// download, ~60 MB of peak RSS (277-288 -> 227-229 MB for that folder). Now a few at a time:
// 200,000 entries walked within a 24 MiB heap limit, which the array exceeded (V8 ended the
// process: "Reached heap limit").
import { execFile } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHILD = fileURLToPath(new URL("./read-only-walk-memory-child.ts", import.meta.url));
const ENTRIES = 200_000;

let root: string;

beforeAll(() => {
  // tmpfs where there is one: 200,000 files are quick to make there.
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  root = mkdtempSync(join(base, "dsfetch-read-only-walk-"));
  mkdirSync(join(root, "flat"));
  for (let i = 0; i < ENTRIES; i++) {
    writeFileSync(join(root, "flat", `n${String(i).padStart(7, "0")}.JPEG`), "");
  }
}, 120_000);

afterAll(() => {
  if (root === undefined) return;
  // The walk left flat/ read-only: opened up again, then removed by one rmSync (~1 CPU-s for
  // the 200,000 files; removeTree's recursive fs.promises.rm took ~7).
  if (existsSync(join(root, "flat"))) chmodSync(join(root, "flat"), 0o755);
  rmSync(root, { recursive: true, force: true });
}, 120_000);

describe("making a large directory read-only", () => {
  it(`${ENTRIES} entries in one directory within a 24 MiB heap`, async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--max-old-space-size=24", CHILD, root],
      { timeout: 120_000 },
    );
    expect(Number(stdout.trim())).toBeLessThanOrEqual(24);
    // And the walk did its job.
    expect(statSync(join(root, "flat")).mode & 0o777).toBe(0o555);
    expect(statSync(join(root, "flat", "n0000000.JPEG")).mode & 0o777).toBe(0o444);
    expect(
      statSync(join(root, "flat", `n${String(ENTRIES - 1).padStart(7, "0")}.JPEG`)).mode & 0o777,
    ).toBe(0o444);
  }, 120_000);
});
