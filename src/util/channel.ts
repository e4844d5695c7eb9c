/**
 * A bounded, single-consumer async queue of buffers. The producer awaits `push` when the
 * queue holds more than `highWaterBytes` (backpressure); when the consumer stops early,
 * pushes are accepted and dropped, so the producer can run to the end (e.g. to hash every
 * byte of an archive whose extractor finished before the trailing padding).
 */
export class Channel implements AsyncIterable<Buffer> {
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private closed = false;
  private failure: unknown;
  private consumerGone = false;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;
  private readonly highWaterBytes: number;
  private readonly onConsumed: ((chunk: Buffer) => void) | undefined;

  /**
   * @param onConsumed called with each chunk the consumer is done with: when it asks for
   *   the next one or stops, and for chunks dropped unread. A consumer must therefore not
   *   keep a chunk (or a view of it) after asking for the next.
   */
  constructor(highWaterBytes: number, onConsumed?: (chunk: Buffer) => void) {
    this.highWaterBytes = highWaterBytes;
    this.onConsumed = onConsumed;
  }

  async push(chunk: Buffer): Promise<void> {
    if (this.consumerGone) {
      this.onConsumed?.(chunk);
      return;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.wake();
    while (this.queuedBytes > this.highWaterBytes && !this.consumerGone) {
      await new Promise<void>((resolve) => {
        this.wakeProducer = resolve;
      });
    }
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  fail(error: unknown): void {
    this.failure = error;
    this.closed = true;
    this.wake();
  }

  /**
   * The consumer will not read (it failed before it started, or gave up): drops what is
   * queued and releases a producer waiting on a full queue; later pushes are dropped.
   */
  abandon(): void {
    if (this.consumerGone) return;
    this.consumerGone = true;
    for (const dropped of this.queue) this.onConsumed?.(dropped);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.wakeProducer?.();
    this.wakeProducer = undefined;
  }

  /** True once the consumer stopped reading before the end. */
  get abandoned(): boolean {
    return this.consumerGone;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        const chunk = this.queue.shift();
        if (chunk !== undefined) {
          this.queuedBytes -= chunk.length;
          this.wakeProducer?.();
          this.wakeProducer = undefined;
          try {
            yield chunk;
          } finally {
            this.onConsumed?.(chunk);
          }
          continue;
        }
        if (this.failure !== undefined) throw this.failure;
        if (this.closed) return;
        await new Promise<void>((resolve) => {
          this.wakeConsumer = resolve;
        });
      }
    } finally {
      if (!this.closed || this.queue.length > 0) this.abandon();
    }
  }

  private wake(): void {
    this.wakeConsumer?.();
    this.wakeConsumer = undefined;
  }
}
