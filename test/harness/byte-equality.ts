// Byte arrays compared as bytes in toEqual/toStrictEqual, not element by element: vitest walks
// a Buffer like an array, ~0.5-2 s of CPU per megabyte here, and tests compare downloaded and
// expanded files of up to tens of MiB with what they uploaded (decompress.test.ts: a third of
// its CPU, 2026-12-07). Registered for every test file by byte-equality-setup.ts
// (vitest.config.ts, setupFiles).
//
// Same verdicts as vitest's own comparison: arrays of one kind are equal when their bytes are;
// anything else (a Buffer against a Uint8Array, a Uint16Array) is left to vitest.
/** How many comparisons it decided (its test sees it is registered). */
export const decided = { count: 0 };

export function sameBytes(a: unknown, b: unknown): boolean | undefined {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array)) return undefined;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return undefined;
  decided.count += 1;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}
