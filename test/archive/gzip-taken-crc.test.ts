// A .tar.gz's gzip trailers are checked against the CRC-32 the tar extraction keeps of what it
// took (its files' CRCs folded in: archive/gunzip.ts, tar-extract.ts takenCrc), not one zlib
// computes a second time. What must hold: every valid archive extracts, wherever its gzip
// members cut the tar (headers, small and large files' data, padding, the end), in both
// write modes; and any byte changed where the inflate cannot notice (stored blocks) fails,
// inside a file (hashed directly or folded in) or outside one (padding, a header's unused
// bytes), with nothing but the error.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { extractTarInWorker } from "../../src/archive/extract-in-worker.ts";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";
import type { WriteMode } from "../../src/archive/tar-extract.ts";
import { DsfetchError } from "../../src/errors.ts";
import {
  chunks,
  dir,
  file,
  gnuLong,
  hardlink,
  pax,
  symlink,
  tar,
  type Workspace,
  workspace,
} from "./tar-helpers.ts";

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

/** Files on both sides of each size that matters: 4 KiB (hashed directly), 1 MiB (parallel). */
function sample(): { archive: Buffer; files: Map<string, Buffer> } {
  const files = new Map<string, Buffer>();
  const parts: Buffer[] = [dir("d/")];
  const sizes = [0, 1, 100, 511, 512, 4095, 4096, 4097, 16384, 70_001, 1 << 20, (1 << 20) + 1];
  sizes.push(3_000_000);
  for (const [i, size] of sizes.entries()) {
    const data = randomBytes(size);
    const name = `d/f${i}-${size}.bin`;
    files.set(name, data);
    parts.push(file(name, data));
  }
  const long = `d/${"n".repeat(150)}.bin`;
  const longData = randomBytes(9000);
  files.set(long, longData);
  parts.push(gnuLong("L", long), file(long.slice(0, 99), longData));
  const paxName = "d/pax-named.bin";
  const paxData = randomBytes(5000);
  files.set(paxName, paxData);
  parts.push(pax({ path: paxName, comment: "x".repeat(700) }), file("placeholder", paxData));
  files.set("d/hard", files.get("d/f8-16384.bin") as Buffer);
  parts.push(hardlink("d/hard", "d/f8-16384.bin"), symlink("d/link", "f1-1.bin"));
  return { archive: tar(...parts), files };
}

/** `data` gzipped as members cut at `cuts` (offsets into `data`), each at `level`. */
function members(data: Buffer, cuts: number[], level: number): Buffer {
  const points = [0, ...cuts.filter((c) => c > 0 && c < data.length).sort((a, b) => a - b)];
  points.push(data.length);
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    out.push(gzipSync(data.subarray(points[i], points[i + 1]), { level }));
  }
  return Buffer.concat(out);
}

function job(dest: string, writes: WriteMode) {
  return {
    compression: "gzip",
    destination: dest,
    limits: DEFAULT_LIMITS,
    dataset: "ds",
    writes,
  } as const;
}

async function failureOf(promise: Promise<unknown>): Promise<DsfetchError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DsfetchError) return error;
    throw error;
  }
  throw new Error("expected a failure");
}

describe("gzip trailers checked against the extraction's CRC of what it took", () => {
  it("members cutting the tar anywhere: every file byte-exact, in both write modes", async () => {
    const { archive, files } = sample();
    const at = (name: string) => archive.indexOf(files.get(name)?.subarray(0, 64) as Buffer);
    const big = at("d/f12-3000000.bin");
    const cutSets = [
      [],
      // In the first header, at a block's edge, in a small file, a folded one, a parallel one.
      [100, 512, at("d/f3-511.bin") + 7, at("d/f8-16384.bin") + 5000, at("d/f10-1048576.bin") + 9],
      // In the big file, in its padding, in the end marker.
      [big + 1, big + 2_999_999, big + 3_000_000 + 3, archive.length - 700, archive.length - 1],
      Array.from({ length: 40 }, (_, i) => Math.floor(((i + 1) * archive.length) / 41) + i),
    ];
    for (const [n, cuts] of cutSets.entries()) {
      for (const writes of ["serial", "parallel"] as const) {
        const gz = members(archive, cuts, n % 2 === 0 ? 1 : 0);
        ws = workspace();
        const result = await extractTarInWorker(
          chunks(gz, 1000, 300_000, n + 1),
          job(ws.dest, writes),
        );
        expect(result.files.length, `cuts ${n}, ${writes}`).toBe(files.size);
        for (const [name, data] of files) {
          expect(
            readFileSync(join(ws.dest, name)).equals(data),
            `${name}, cuts ${n}, ${writes}`,
          ).toBe(true);
        }
        ws.cleanup();
        ws = undefined;
      }
    }
  });

  it("a byte changed where the inflate cannot see it (stored blocks) fails, inside or outside a file, in both write modes", async () => {
    const { archive, files } = sample();
    const stored = members(archive, [archive.length >> 1], 0);
    const inGz = (bytes: Buffer) => {
      const where = stored.indexOf(bytes);
      expect(where).toBeGreaterThan(0);
      return where;
    };
    const small = files.get("d/f4-512.bin") as Buffer;
    const folded = files.get("d/f8-16384.bin") as Buffer;
    const big = files.get("d/f12-3000000.bin") as Buffer;
    const places: [string, number][] = [
      ["a small file's data (hashed directly)", inGz(small.subarray(0, 64)) + 100],
      ["a larger file's data (its CRC folded in)", inGz(folded.subarray(0, 64)) + 9000],
      [
        "a file just over the direct bound",
        inGz((files.get("d/f7-4097.bin") as Buffer).subarray(0, 64)),
      ],
      ["the big file's last byte", inGz(big.subarray(-64)) + 63],
      // The zeros after the 100-byte file's data: tar ignores what padding holds.
      ["a file's padding", inGz((files.get("d/f2-100.bin") as Buffer).subarray(-32)) + 32 + 5],
    ];
    for (const [what, offset] of places) {
      for (const writes of ["serial", "parallel"] as const) {
        const damaged = Buffer.from(stored);
        damaged[offset] = (damaged[offset] as number) ^ 0x10;
        ws = workspace();
        const error = await failureOf(
          extractTarInWorker(chunks(damaged, 4096, 200_000, 3), job(ws.dest, writes)),
        );
        expect(error.code, `${what}, ${writes}`).toBe("ARCHIVE_INVALID");
        expect(error.message, `${what}, ${writes}`).toBe(
          "ds: the gzip data is corrupt or truncated (node:zlib: incorrect data check)",
        );
        ws.cleanup();
        ws = undefined;
      }
    }
  });
});
