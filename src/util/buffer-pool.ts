/**
 * Fixed-size buffers handed out and given back, so that a stream of large chunks reuses a
 * few allocations. Why: every new large Buffer is external memory to V8, and enough of it
 * since the last collection starts a full mark-compact. Streaming a 327 MiB tar in 8 MiB
 * ranges took 19 of them on the main thread, and the concurrent marking and sweeping cost
 * ~0.4 s of CPU on a 2-core machine where the fetch takes ~1.3 s; each fresh buffer also
 * pays a page fault per 4 KiB page on its first write.
 */
export class BufferPool {
  private readonly size: number;
  private readonly keep: number;
  private readonly shared: boolean;
  private readonly free: ArrayBufferLike[] = [];
  /** Only memory this pool made comes back into it. */
  private readonly own = new WeakSet<ArrayBufferLike>();

  /**
   * @param size bytes of every buffer (a request may use fewer)
   * @param keep how many given-back buffers to hold at most (the rest are left to the GC)
   * @param shared SharedArrayBuffer memory: worker threads read it in place, without the
   *   copy a transfer would need (one chunk read by two threads: stage/expand.ts)
   */
  constructor(size: number, keep: number, { shared = false }: { shared?: boolean } = {}) {
    this.size = size;
    this.keep = keep;
    this.shared = shared;
  }

  /** A buffer of `length` <= size bytes, contents undefined. */
  take(length: number): Buffer {
    if (length > this.size) return Buffer.allocUnsafe(length);
    let memory = this.free.pop();
    if (memory === undefined) {
      memory = this.shared ? new SharedArrayBuffer(this.size) : new ArrayBuffer(this.size);
      this.own.add(memory);
    }
    return Buffer.from(memory, 0, length);
  }

  /** `chunk` (or any view of a taken buffer) is no longer used by anyone. */
  give(chunk: Uint8Array): void {
    const memory = chunk.buffer;
    if (!this.own.has(memory)) return;
    if (this.free.length < this.keep && !this.free.includes(memory)) this.free.push(memory);
  }
}
