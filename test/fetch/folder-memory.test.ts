// The heap a folder holds per object while it is staged, once its download has ended: its
// listing (resolve.ts) and the manifest's entries (download-prefix.ts, kept-objects.ts). It was
// ~330-340 B per object: a literal per listed object (56 B) with a sliced path string (32 B),
// and a manifest entry per object (56 B) with its digest string "md5:…" (80 B), which for
// every single-part object verified by MD5 is its listed ETag again. 1.28 M objects
// (ImageNet): ~420 MB of heap, enough to end a sidecar with a small memory limit (memory
// review of folders, 2026-12-06). Now a class of three fields per object, the path sliced from
// the key when asked for, and the manifest's entries made from the listing as it is written:
// ~145-160 B; an ETag that is an MD5 is four 32-bit words in its object, not a string: ~132 B.
//
// Measured in a process of its own (folder-memory-child.ts, --expose-gc), against a store
// kept in that process, which holds nothing per object.
import { execFile } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHILD = fileURLToPath(new URL("./folder-memory-child.ts", import.meta.url));
/**
 * 20,000: the child measures the least of three settles (folder-memory-child.ts): 2026-12-07,
 * 30 runs at this count, both cores otherwise idle or busy, 135-138 B per object for MD5,
 * 143-144 CRC64NVME, 167 SHA256; with each MD5 ETag a string 159-160 (caught). One settle
 * alone, with both cores busy, sometimes counted garbage too (149 and 151 for MD5). 40,000
 * took twice the CPU for the same numbers.
 */
const OBJECTS = 20_000;

/**
 * Bytes per object (heap, and the array buffers of VerifiedObjects' two bytes). Measured with
 * 8-byte tagged values (Node's builds), of 40,000 objects: 131-134 now; 155-161 with each MD5
 * ETag a string; 203-224 with the manifest entries made from the listing but the listing's
 * objects literals with their path; 338-341 before all three.
 */
const BOUND = 150;

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-folder-memory-"));
});

afterAll(() => {
  // One rmSync for the files of the three folders (fs.promises.rm took seconds of CPU).
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

/** Stages a folder in a child process; what it measured. */
async function measure(directory: string, checksum?: string) {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      "--expose-gc",
      CHILD,
      directory,
      String(OBJECTS),
      ...(checksum === undefined ? [] : [checksum]),
    ],
    { timeout: 120_000 },
  );
  return JSON.parse(stdout) as {
    objects: number;
    entries: number;
    digests: number;
    verification: Record<string, number>;
    heapPerObject: number;
    arrayBuffersPerObject: number;
  };
}

describe("a staged folder's memory per object", () => {
  it(`listing and manifest entries: under ${BOUND} B per object`, async () => {
    const measured = await measure(join(scratch, "md5"));
    // Every object listed, fetched, verified, and in the manifest with "md5:" + its ETag.
    expect(measured.objects).toBe(OBJECTS);
    expect(measured.entries).toBe(OBJECTS);
    expect(measured.digests).toBe(OBJECTS);
    expect(measured.verification).toEqual({ md5: OBJECTS });
    expect(
      measured.heapPerObject + Math.max(0, measured.arrayBuffersPerObject),
      JSON.stringify(measured),
    ).toBeLessThan(BOUND);
  }, 120_000);

  // Objects uploaded by AWS SDKs since 2025 carry a CRC64NVME checksum, which verifies them
  // and is their manifest digest: kept as a string per object (and a map entry), it was
  // 296 B per object with CRC64NVME, 322 with SHA-256; as its bytes, ~132 + 8 or 32.
  for (const [checksum, bytes] of [
    ["CRC64NVME", 8],
    ["SHA256", 32],
  ] as const) {
    it(`every object verified by its ${checksum} checksum: under ${BOUND} + ${bytes} B per object`, async () => {
      const measured = await measure(join(scratch, checksum), checksum);
      expect(measured.objects).toBe(OBJECTS);
      expect(measured.entries).toBe(OBJECTS);
      // Every manifest digest is "<algorithm>:" + the object's checksum in base64.
      expect(measured.digests).toBe(OBJECTS);
      expect(measured.verification).toEqual({ [`checksum:${checksum.toLowerCase()}`]: OBJECTS });
      expect(
        measured.heapPerObject + Math.max(0, measured.arrayBuffersPerObject),
        JSON.stringify(measured),
      ).toBeLessThan(BOUND + bytes);
    }, 120_000);
  }
});
