// preallocate(): blocks reserved and the length set where `fallocate` can; a full disk is the
// only failure; a missing program, a filesystem that cannot, or a hung one leave the file as
// it was. The failing programs are stand-in scripts (a real "no space" would fill the disk:
// ext4 allocates up to the end of the free space before it gives up).

import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findProgram } from "../../src/archive/decompress.ts";
import { preallocate } from "../../src/util/preallocate.ts";

const dir = mkdtempSync(join(tmpdir(), "dsfetch-preallocate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function standIn(name: string, script: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
  return path;
}

function emptyFile(name: string): string {
  const path = join(dir, name);
  writeFileSync(path, "");
  return path;
}

describe("preallocate", () => {
  it.skipIf(findProgram("fallocate") === undefined)(
    "sets the length and allocates the blocks (fallocate installed)",
    async () => {
      const path = emptyFile("real.bin");
      const bytes = 3 * 1024 * 1024 + 4096;
      await preallocate(path, bytes);
      const stat = statSync(path);
      expect(stat.size).toBe(bytes);
      expect(stat.blocks * 512).toBeGreaterThanOrEqual(bytes);
    },
  );

  it("gives a full disk as ENOSPC, naming the size and the path", async () => {
    const program = standIn(
      "full",
      'echo "fallocate: fallocate failed: No space left on device" >&2; exit 1',
    );
    const path = emptyFile("full.bin");
    await expect(preallocate(path, 5_000_000, { program })).rejects.toMatchObject({
      code: "ENOSPC",
      message: `no space for 5000000 bytes at ${path}`,
    });
  });

  it("goes ahead when the filesystem cannot, or the program is missing", async () => {
    const program = standIn(
      "unsupported",
      'echo "fallocate: fallocate failed: Operation not supported" >&2; exit 1',
    );
    const path = emptyFile("unsupported.bin");
    await expect(preallocate(path, 5_000_000, { program })).resolves.toBeUndefined();
    await expect(
      preallocate(path, 5_000_000, { program: join(dir, "no-such-program") }),
    ).resolves.toBeUndefined();
    expect(statSync(path).size).toBe(0);
  });

  it("passes the length and the path as they are (a path that looks like an option)", async () => {
    const program = standIn("args", `printf '%s\\n' "$@" > "${join(dir, "args.txt")}"`);
    await preallocate("-rf", 42, { program });
    expect(readFileSync(join(dir, "args.txt"), "utf8")).toBe("--length\n42\n--\n-rf\n");
  });

  it("does not try for more than statfs says is free (ext4 would fill the disk first)", async () => {
    const calls = join(dir, "calls.txt");
    const program = standIn("counting", `echo called >> "${calls}"`);
    const path = emptyFile("huge.bin");
    // Twice what is free: other processes freeing space between the two statfs calls (a CI
    // run beside other tests did) must not make it fit.
    const { bavail, bsize } = statfsSync(dir);
    await preallocate(path, 2 * bavail * bsize + 1, { program });
    expect(existsSync(calls)).toBe(false);
    await preallocate(path, 4096, { program });
    expect(readFileSync(calls, "utf8")).toBe("called\n");
  });

  it("stops at once when aborted, with the abort's reason", async () => {
    const program = standIn("slow", "sleep 30");
    const abort = new AbortController();
    const reason = new Error("stopped by the test");
    const started = Date.now();
    const pending = preallocate(emptyFile("slow.bin"), 1024, { program, signal: abort.signal });
    setTimeout(() => abort.abort(reason), 50);
    await expect(pending).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
