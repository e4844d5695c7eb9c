/**
 * Worker thread of WorkerHasher (worker-hasher.ts): hashes a file being written, in order,
 * as far as the main thread says it is contiguous, one digest per span. Runs off the main
 * thread, which keeps the network and the writes moving (MD5 costs ~1.5 s of CPU per GiB
 * here, a third of a large download's main-thread time). The MD5s of many parts are taken
 * eight at a time in SIMD lanes (md5-lanes.ts): 2 GiB in 8 MiB parts, 3.1 s -> 1.2 s.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import type { Checksum } from "./checksum/index.ts";
import { Md5Lanes, useMd5Lanes } from "./md5-lanes.ts";
import { createDigest, type DigestAlgorithm } from "./verification.ts";

interface Span {
  start: number;
  end: number;
}

type Message = { type: "advance"; offset: number } | { type: "finish"; total: number };

const { path, parts, algorithm } = workerData as {
  path: string;
  parts: Span[];
  algorithm: DigestAlgorithm;
};
const port = parentPort;
if (port === null) throw new Error("hash-worker must run as a worker thread");

const fd = openSync(path, "r");
const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
const digests: Uint8Array[] = [];
let hash: Checksum = createDigest(algorithm);
let partIndex = 0;
// Parts need not be adjacent: with several workers each takes every k-th part.
let hashedUpTo = parts[0]?.start ?? 0;
let available = 0;
let finishAt: number | undefined;
let finished = false;

// MD5 of many parts: eight at a time in SIMD lanes (~3x one core's sequential MD5).
const lanes = useMd5Lanes(algorithm, parts.length) ? startLanes() : undefined;

/**
 * Says "still hashing" every REPORT_BYTES: the hash of a large object trails its download
 * (by as much as the hash is slower than the link), and a folder's stall clock must not take
 * that tail for hung storage (stage/stage-dataset.ts; found in review).
 */
const REPORT_BYTES = 16 * 1024 * 1024;
let unreported = 0;
function hashedBytes(bytes: number): void {
  unreported += bytes;
  if (unreported < REPORT_BYTES) return;
  unreported -= REPORT_BYTES;
  port?.postMessage({ type: "hashed" });
}

function startLanes(): Md5Lanes | undefined {
  try {
    return new Md5Lanes(parts, (target, position) => {
      const read = readSync(fd, target, 0, target.length, position);
      if (read !== target.length) throw new Error(`short read at ${position}`);
      hashedBytes(read);
    });
  } catch {
    // No memory for the kernel's instance: OpenSSL's MD5, one part after the other.
    return undefined;
  }
}

function pump(): void {
  if (lanes !== undefined) pumpLanes(lanes);
  else pumpInOrder();
}

function pumpLanes(hasher: Md5Lanes): void {
  hasher.advance(available, finishAt !== undefined);
  if (finishAt !== undefined && !finished) {
    finished = true;
    closeSync(fd);
    if (!hasher.done) throw new Error(`not every part was hashed (${finishAt} bytes)`);
    port?.postMessage({ type: "done", digests: hasher.results() });
  }
}

function pumpInOrder(): void {
  for (;;) {
    const part = parts[partIndex];
    if (part === undefined) break;
    if (hashedUpTo < part.start) hashedUpTo = part.start;
    if (hashedUpTo === part.end) {
      // An empty part (an empty object): its digest is that of nothing.
      digests.push(new Uint8Array(hash.digest()));
      hash = createDigest(algorithm);
      partIndex += 1;
      continue;
    }
    if (hashedUpTo >= available) break;
    const length = Math.min(buffer.length, available - hashedUpTo, part.end - hashedUpTo);
    const read = readSync(fd, buffer, 0, length, hashedUpTo);
    if (read !== length) throw new Error(`short read at ${hashedUpTo}`);
    hash.update(buffer.subarray(0, length));
    hashedBytes(length);
    hashedUpTo += length;
    if (hashedUpTo === part.end) {
      digests.push(new Uint8Array(hash.digest()));
      hash = createDigest(algorithm);
      partIndex += 1;
    }
  }
  if (finishAt !== undefined && !finished) {
    finished = true;
    closeSync(fd);
    if (partIndex !== parts.length) {
      throw new Error(
        `hashed ${partIndex} of ${parts.length} parts (${hashedUpTo} of ${finishAt} bytes)`,
      );
    }
    port?.postMessage({ type: "done", digests });
  }
}

port.on("message", (message: Message) => {
  try {
    if (message.type === "advance") available = Math.max(available, message.offset);
    else {
      available = Math.max(available, message.total);
      finishAt = message.total;
    }
    pump();
  } catch (error) {
    port.postMessage({
      type: "error",
      message: error instanceof Error ? error.message : String(error),
    });
  }
});
