// extractTarInWorker(): the extraction thread of streaming archives. What the user sees must
// be what in-process extraction gives: the same files, the same errors (code, message, hint),
// the source's own error when the download fails, the abort reason on abort, and no thread
// left running.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { extractTarInWorker } from "../../src/archive/extract-in-worker.ts";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";
import { DsfetchError } from "../../src/errors.ts";
import { chunks, file, symlink, tar, type Workspace, workspace } from "./tar-helpers.ts";

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

function job(dest: string, compression: "none" | "gzip" = "none") {
  return { compression, destination: dest, limits: DEFAULT_LIMITS, dataset: "ds" } as const;
}

/** Many files of varied sizes, some bigger than a batch (1 MiB), in odd chunk sizes. */
function sampleArchive(): { archive: Buffer; files: Map<string, Buffer> } {
  const files = new Map<string, Buffer>();
  const parts: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const size = i % 50 === 0 ? 1_500_000 + i : (i * 7919) % 40_000;
    const data = Buffer.alloc(size, i % 251);
    const name = `dir${i % 7}/f${i}.bin`;
    files.set(name, data);
    parts.push(file(name, data));
  }
  return { archive: tar(...parts), files };
}

describe("extractTarInWorker", () => {
  it("extracts a plain and a gzip tar byte-exact, whatever the chunk sizes", async () => {
    const { archive, files } = sampleArchive();
    for (const [compression, bytes] of [
      ["none", archive],
      ["gzip", gzipSync(archive)],
    ] as const) {
      ws = workspace();
      const result = await extractTarInWorker(
        chunks(bytes, 1, 300_000, 7),
        job(ws.dest, compression),
      );
      expect(result.files).toHaveLength(files.size);
      expect(result.bytes).toBe([...files.values()].reduce((n, b) => n + b.length, 0));
      for (const [name, data] of files) {
        expect(readFileSync(join(ws.dest, name)).equals(data), name).toBe(true);
      }
      ws.cleanup();
      ws = undefined;
    }
  });

  it("reports the extractor's refusal with its code, message and hint; nothing outside", async () => {
    ws = workspace();
    const before = ws.outside();
    const archive = tar(file("ok.txt", "fine"), symlink("link", "../../outside"));
    const error = await extractTarInWorker(chunks(archive, 100), job(ws.dest)).catch((e) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error.code).toBe("UNSAFE_PATH");
    expect(error.message).toContain('archive entry "link"');
    expect(error.message).toContain("outside the dataset directory");
    expect(error.hint).toContain("nothing was published");
    expect(error.dataset).toBe("ds");
    expect(ws.outside()).toEqual(before);
  });

  it("reports corrupt gzip data as ARCHIVE_INVALID naming the codec", async () => {
    ws = workspace();
    const gz = gzipSync(sampleArchive().archive);
    // The trailer's CRC-32: the tar itself decodes completely, only gzip can tell.
    gz[gz.length - 8] = (gz[gz.length - 8] ?? 0) ^ 1;
    const error = await extractTarInWorker(chunks(gz, 65536), job(ws.dest, "gzip")).catch((e) => e);
    expect(error).toBeInstanceOf(DsfetchError);
    expect(error.code).toBe("ARCHIVE_INVALID");
    expect(error.message).toMatch(/gzip data is corrupt or truncated/);
  });

  it("rethrows the source's own error (a failed download), not an extraction error", async () => {
    ws = workspace();
    const { archive } = sampleArchive();
    const failure = new DsfetchError("TRANSIENT", "connection reset after 3 retries");
    async function* broken(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 2_000_000);
      throw failure;
    }
    await expect(extractTarInWorker(broken(), job(ws.dest))).rejects.toBe(failure);
  });

  it("stops on abort with the signal's reason, also while waiting for the source", async () => {
    ws = workspace();
    const { archive } = sampleArchive();
    const controller = new AbortController();
    const reason = new DsfetchError("INTERRUPTED", "interrupted by SIGTERM");
    async function* slow(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 3_000_000);
      controller.abort(reason);
      await new Promise((resolve) => setTimeout(resolve, 50));
      // A source honouring the signal fails with its reason (as orderedRanges does).
      controller.signal.throwIfAborted();
      yield archive.subarray(3_000_000);
    }
    await expect(extractTarInWorker(slow(), job(ws.dest), controller.signal)).rejects.toBe(reason);
  });

  it("an archive that ends early is ARCHIVE_INVALID (truncated), from the worker", async () => {
    ws = workspace();
    const { archive } = sampleArchive();
    const error = await extractTarInWorker(
      chunks(archive.subarray(0, 2_500_000), 65536),
      job(ws.dest),
    ).catch((e) => e);
    expect(error.code).toBe("ARCHIVE_INVALID");
    expect(error.message).toMatch(/truncated/);
    expect(existsSync(ws.dest)).toBe(true);
  });
});
