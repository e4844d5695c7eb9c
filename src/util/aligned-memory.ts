/**
 * Page-aligned memory that worker threads can share: a shared WebAssembly.Memory, which V8
 * maps on page boundaries (an ArrayBuffer's backing store comes from malloc and is not
 * aligned). O_DIRECT needs buffers aligned to the device's logical block size
 * (download-direct.ts).
 */

/** The part of the WebAssembly global used here (TypeScript declares it only with the DOM). */
interface WebAssemblyMemoryApi {
  Memory: new (descriptor: {
    initial: number;
    maximum: number;
    shared: boolean;
  }) => { buffer: SharedArrayBuffer };
}

const WASM_PAGE = 64 * 1024;

/**
 * `bytes` (rounded up to 64 KiB) of zeroed shared memory, as a WebAssembly.Memory (its
 * `buffer` for JavaScript; the memory itself for a WebAssembly instance to import), or
 * undefined where none can be had.
 */
export function alignedSharedMemory(bytes: number): { buffer: SharedArrayBuffer } | undefined {
  const api = (globalThis as { WebAssembly?: WebAssemblyMemoryApi }).WebAssembly;
  if (api === undefined) return undefined;
  const pages = Math.max(1, Math.ceil(bytes / WASM_PAGE));
  try {
    return new api.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    return undefined;
  }
}
