/**
 * MD5 of a folder's small objects, gathered over at most a millisecond (or until eight wait)
 * and hashed together in the SIMD lanes (md5-lanes.ts md5Many). Hashed one by one with
 * OpenSSL, 20,000 objects of 16 KiB took ~0.7 s of the main thread's CPU; in lanes of eight,
 * ~0.16 s. Gathered per turn of the event loop instead, most turns had fewer than four (the
 * answers of 128 GETs in flight come a socket or two at a time): 251 ms of OpenSSL and 100
 * of lanes. A millisecond more per object is nothing beside its request's ~35 ms in flight.
 * Fewer than MIN_PARTS_FOR_LANES waiting, or no WebAssembly SIMD: OpenSSL, as before.
 */
import { createHash } from "node:crypto";
import { LANES, md5Many, useMd5Lanes } from "./md5-lanes.ts";

interface Waiting {
  readonly bytes: Uint8Array;
  readonly resolve: (digest: Buffer) => void;
  readonly reject: (error: unknown) => void;
}

/** The lanes of one kernel call: hashed at once when this many wait. */
const BATCH = LANES;
const GATHER_MS = 1;

let waiting: Waiting[] = [];
let timer: NodeJS.Timeout | undefined;

/**
 * The MD5 of `bytes`, within about a millisecond. The caller must not change `bytes` until
 * the promise settles.
 */
export function md5Soon(bytes: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    waiting.push({ bytes, resolve, reject });
    if (waiting.length >= BATCH) hashWaiting();
    else timer ??= setTimeout(hashWaiting, GATHER_MS);
  });
}

function hashWaiting(): void {
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  const batch = waiting;
  waiting = [];
  if (useMd5Lanes("MD5", batch.length)) {
    let digests: Buffer[] | undefined;
    try {
      digests = md5Many(batch.map((entry) => entry.bytes));
    } catch {
      // The lanes failed (no kernel instance to be had): OpenSSL, one by one, as before them
      // (review, 2026-12-06: a whole batch of objects failed with a bare Error).
    }
    if (digests !== undefined) {
      batch.forEach((entry, index) => {
        entry.resolve(digests[index] as Buffer);
      });
      return;
    }
  }
  for (const entry of batch) {
    try {
      entry.resolve(createHash("md5").update(entry.bytes).digest());
    } catch (error) {
      entry.reject(error);
    }
  }
}
