/**
 * MD5 of a folder's small objects, gathered from the objects answered in the same turn of
 * the event loop and hashed together in the SIMD lanes (md5-lanes.ts md5Many): the GETs of
 * 128 objects in flight are answered a few per turn. Hashed one by one with OpenSSL, 20,000
 * objects of 16 KiB took ~0.7 s of the main thread's CPU; in lanes of eight, ~0.16 s.
 * Fewer than MIN_PARTS_FOR_LANES waiting, or no WebAssembly SIMD: OpenSSL, as before.
 */
import { createHash } from "node:crypto";
import { md5Many, useMd5Lanes } from "./md5-lanes.ts";

interface Waiting {
  readonly bytes: Uint8Array;
  readonly resolve: (digest: Buffer) => void;
  readonly reject: (error: unknown) => void;
}

let waiting: Waiting[] = [];
let scheduled = false;

/**
 * The MD5 of `bytes`, once the current turn of the event loop is over. The caller must not
 * change `bytes` until the promise settles.
 */
export function md5Soon(bytes: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    waiting.push({ bytes, resolve, reject });
    if (!scheduled) {
      scheduled = true;
      setImmediate(hashWaiting);
    }
  });
}

function hashWaiting(): void {
  scheduled = false;
  const batch = waiting;
  waiting = [];
  let digests: Buffer[];
  try {
    digests = useMd5Lanes("MD5", batch.length)
      ? md5Many(batch.map((entry) => entry.bytes))
      : batch.map((entry) => createHash("md5").update(entry.bytes).digest());
  } catch (error) {
    for (const entry of batch) entry.reject(error);
    return;
  }
  batch.forEach((entry, index) => {
    entry.resolve(digests[index] as Buffer);
  });
}
