// writeNewFileSync / writeAllSync / writeNewFileTimed: whole data on disk, in pieces, never
// over an existing file; timed creates and the switch to the thread pool (util/slow-creates.ts).
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SlowCreates, WINDOW } from "../../src/util/slow-creates.ts";
import { WRITE_PIECE, writeNewFileSync, writeNewFileTimed } from "../../src/util/write-piece.ts";

const dir = mkdtempSync(join(tmpdir(), "dsfetch-write-piece-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("writeNewFileSync", () => {
  it("writes data larger than one piece byte-exact, with the mode asked for", () => {
    const data = randomBytes(4 * WRITE_PIECE + 5);
    const path = join(dir, "big.bin");
    writeNewFileSync(path, data, 0o444);
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o444);
  });

  it("refuses to replace an existing file", () => {
    const path = join(dir, "exists.bin");
    writeFileSync(path, "keep");
    expect(() => writeNewFileSync(path, Buffer.from("new"), 0o444)).toThrow(/EEXIST/);
    expect(readFileSync(path, "utf8")).toBe("keep");
  });
});

describe("SlowCreates", () => {
  /** Clocks the test moves: wall time in ms, this thread's CPU time in us. */
  function clocked(cpu: boolean) {
    const clock = { wallMs: 0, cpuUs: 0 };
    const creates = new SlowCreates(250, cpu ? () => clock.cpuUs : null, () => clock.wallMs);
    /** `files` files whose open + close take `us` each, `busy` of it on the CPU. */
    const files = (count: number, us: number, busy = 0): boolean[] =>
      Array.from({ length: count }, () => {
        creates.begin();
        clock.wallMs += us / 1000;
        clock.cpuUs += busy * us;
        creates.end();
        return creates.fileDone();
      });
    return { creates, files };
  }

  it("without a CPU clock, the first window whose mean passes the bound decides, for good", () => {
    const { creates, files } = clocked(false);
    expect(files(WINDOW, 100)).not.toContain(true); // 100 us: a local disk on a bad day
    expect(creates.slow).toBe(false);
    expect(files(WINDOW, 1000).at(-1)).toBe(true); // 1 ms: a round trip to a file server
    expect(creates.slow).toBe(true);
    expect(files(WINDOW, 0)).not.toContain(true);
    expect(creates.slow).toBe(true);
  });

  it("network storage: a slow window spent waiting is confirmed by the next one", () => {
    const { creates, files } = clocked(true);
    expect(files(WINDOW, 1000, 0.05)).not.toContain(true);
    expect(creates.slow).toBe(false);
    expect(files(WINDOW, 1000, 0.05).at(-1)).toBe(true);
    expect(creates.slow).toBe(true);
  });

  it("a local disk slow on the CPU (ext4 after mass deletions) stays serial, re-checked after a cooldown", () => {
    const { creates, files } = clocked(true);
    expect(files(2 * WINDOW, 400, 0.95)).not.toContain(true);
    // 64 windows are not confirmed again, even if they wait.
    expect(files(64 * WINDOW, 1000, 0)).not.toContain(true);
    expect(creates.slow).toBe(false);
    files(2 * WINDOW, 1000, 0);
    expect(creates.slow).toBe(true);
  });

  it("forMode: serial is never slow, parallel is from the start", () => {
    const serial = SlowCreates.forMode("serial");
    for (let i = 0; i < 4 * WINDOW; i++) {
      serial.begin();
      serial.end();
      serial.fileDone();
    }
    expect(serial.slow).toBe(false);
    expect(SlowCreates.forMode("parallel").slow).toBe(true);
    expect(SlowCreates.forMode("auto").slow).toBe(false);
  });
});

describe("writeNewFileTimed", () => {
  it("one file at a time while fast, through the thread pool once slow: the same files", async () => {
    // Any time is slow, on wall time alone: switches after the first window.
    const creates = new SlowCreates(0, null);
    const data = (i: number) => randomBytes((i % 5) * WRITE_PIECE + i);
    for (let i = 0; i < WINDOW + 8; i++) {
      await writeNewFileTimed(join(dir, `timed-${i}`), data(i), 0o444, creates);
    }
    expect(creates.slow).toBe(true);
    expect(creates.parallelFiles).toBe(8);
    for (let i = 0; i < WINDOW + 8; i++) {
      const path = join(dir, `timed-${i}`);
      expect(statSync(path).size).toBe((i % 5) * WRITE_PIECE + i);
      expect(statSync(path).mode & 0o777).toBe(0o444);
    }
    const exact = randomBytes(3 * WRITE_PIECE + 1);
    await writeNewFileTimed(join(dir, "timed-exact"), exact, 0o444, creates);
    expect(readFileSync(join(dir, "timed-exact")).equals(exact)).toBe(true);
  });

  it("refuses to replace an existing file, both ways", async () => {
    for (const mode of ["serial", "parallel"] as const) {
      const path = join(dir, `exists-${mode}.bin`);
      writeFileSync(path, "keep");
      await expect(
        writeNewFileTimed(path, Buffer.from("new"), 0o444, SlowCreates.forMode(mode)),
      ).rejects.toThrow(/EEXIST/);
      expect(readFileSync(path, "utf8")).toBe("keep");
    }
  });
});
