/**
 * Memory for the files queued for parallel writes (parallel-writes.ts), given back once a
 * file is written and closed, and reused for the next ones.
 *
 * Why: with a new Buffer per queued file, every file's data was external memory to V8 that
 * stayed allocated until a collection, and V8 collects for external memory only after ~64
 * MiB more of it: a 327 MiB tar of 20,000 files of 16 KiB, written in parallel (the way to
 * network storage), peaked at 271-272 MiB of RSS against 191-192 MiB one file at a time
 * (tmpfs, DSFETCH_FILE_WRITES=parallel against serial, 2026-12-07).
 *
 * Sizes are rounded up to one of four steps per power of two (at most a quarter more than
 * asked); files under MIN_POOLED bytes come from Node's own small-buffer pool.
 */

/** Below this, Buffer.allocUnsafe (slices of Node's shared 8 KiB slabs). */
export const MIN_POOLED = 4096;

/** The size a request of `size` bytes is served from. */
export function pooledSize(size: number): number {
  if (size <= MIN_POOLED) return MIN_POOLED;
  const step = 2 ** (Math.floor(Math.log2(size - 1)) - 2);
  return Math.ceil(size / step) * step;
}

export class FileDataPool {
  private readonly maxFreeBytes: number;
  private freeBytes = 0;
  /** Given-back memory by its size. */
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Only memory this pool made comes back into it, once. */
  private readonly lent = new WeakSet<ArrayBuffer>();
  /** Memory made by this pool (for tests and reports). */
  allocated = 0;

  /** @param maxFreeBytes given-back bytes kept at most (the rest is left to the GC) */
  constructor(maxFreeBytes: number) {
    this.maxFreeBytes = maxFreeBytes;
  }

  /** `size` bytes, contents undefined: give them back with give() once nothing reads them. */
  take(size: number): Buffer {
    if (size < MIN_POOLED) return Buffer.allocUnsafe(size);
    const rounded = pooledSize(size);
    let memory = this.free.get(rounded)?.pop();
    if (memory === undefined) {
      memory = new ArrayBuffer(rounded);
      this.allocated++;
    } else {
      this.freeBytes -= rounded;
    }
    this.lent.add(memory);
    return Buffer.from(memory, 0, size);
  }

  /**
   * `data` (a buffer from take()) is no longer read or written by anyone: the next take()
   * may hand its memory out again. A buffer given back twice counts once.
   */
  give(data: Buffer): void {
    const memory = data.buffer;
    if (!(memory instanceof ArrayBuffer) || !this.lent.has(memory)) return;
    this.lent.delete(memory);
    if (this.freeBytes + memory.byteLength > this.maxFreeBytes) return;
    const list = this.free.get(memory.byteLength);
    if (list === undefined) this.free.set(memory.byteLength, [memory]);
    else list.push(memory);
    this.freeBytes += memory.byteLength;
  }
}
