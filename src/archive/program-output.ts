/**
 * A decompressing program's standard output (decompress.ts throughProgram: `xz -dc`,
 * `lbzip2 -dc`, …) read straight into a few reused 1 MiB batches, instead of through the
 * child's stdout stream.
 *
 * Why: the stream allocates a new buffer for every read and runs the stream machinery and an
 * async-iterator step for each; `xz` writes 8 KiB at a time, so 1 GiB of output came in
 * ~45,000 reads. Read with net's `onread` into memory we reuse and handed on in batches of
 * 1 MiB, measured here (2 cores, tmpfs): reading 1 GiB of `xz -dc` output and nothing else,
 * Node's own CPU 2.4-2.6 -> 1.0-1.3 s (`cat`: 0.8 s); a fetch of the bench's 462 MiB
 * .tar.xz (1 GiB expanded), dsfetch's own CPU (xz's not counted) 4.8-6.9 -> 4.5-5.7 s and
 * peak RSS 260 -> 239 MiB; extraction of the 118 MiB .tar.bz2, peak RSS 178 -> 136-146 MiB.
 * Wall times moved within this machine's noise (xz itself takes ~20 of the ~26 CPU-s).
 *
 * How: the child's stdout is one end of a Unix socket pair made here (a listening socket in
 * Linux's abstract namespace, which leaves nothing on disk, connected once and closed at
 * once). Any local process may connect to such a name, so our end proves itself with 16
 * random bytes before the accepted end goes to the child; anything else (another platform,
 * a stranger's connection) makes openProgramOutput() return undefined and the caller reads
 * the child's ordinary stdout stream, as before.
 */
import { randomBytes } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";

/** Bytes handed on at once (the last batch, and a batch on a slow producer, may be less). */
export const OUTPUT_BATCH = 1 << 20;
/** Batches at most (the consumer holds one, the rest fill): the memory bound is 4 MiB. */
const BATCHES = 4;
/** A batch with less room than this is handed on: reads smaller than this cost as much. */
const MIN_ROOM = 64 * 1024;
/**
 * A partial batch is handed on after this long while the consumer waits for bytes (a
 * producer slower than 1 MiB per 20 ms, e.g. bzip2 between blocks, is not held back).
 */
const FLUSH_AFTER_MS = 20;
const TOKEN_BYTES = 16;
/** The socket pair is made within this, or the caller reads the child's stdout stream. */
const HANDSHAKE_MS = 1000;

export interface ProgramOutput extends AsyncIterable<Buffer> {
  /** Give this to spawn() as the child's stdout, then call childStarted(). */
  readonly childEnd: Socket;
  /** Closes this process's copy of the child's end (the child has its own). */
  childStarted(): void;
  /** Closes both ends (the child, if any, gets EPIPE on its next write). */
  close(): void;
}

/**
 * A socket pair for a child's stdout, or undefined where it cannot be made safely (not
 * Linux, or the connection that arrived was not ours): read the child's stdout stream then.
 */
export async function openProgramOutput(
  testing: { beforeConnect?: (name: string) => Promise<void> } = {},
): Promise<ProgramOutput | undefined> {
  if (process.platform !== "linux") return undefined;
  const name = `\0dsfetch-output-${process.pid}-${randomBytes(12).toString("hex")}`;
  const token = randomBytes(TOKEN_BYTES);
  const server = createServer({ pauseOnConnect: true });
  let ours: Socket | undefined;
  let theirs: Socket | undefined;
  // One deadline for the whole handshake: out of descriptors, libuv accepts and drops the
  // connection without a word, and the wait would never end (found in review: EMFILE).
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no connection")), HANDSHAKE_MS);
  });
  try {
    const failed = new Promise<never>((_, reject) => server.on("error", reject));
    failed.catch(() => {});
    await Promise.race([
      new Promise<void>((resolve) => server.listen(name, () => resolve())),
      failed,
      deadline,
    ]);
    const accepted = new Promise<Socket>((resolve) => {
      let first = true;
      server.on("connection", (socket: Socket) => {
        // Only the first connection counts; any other (ours, after a stranger's) is closed.
        if (first) resolve(socket);
        else socket.destroy();
        first = false;
      });
    });
    // Tests: a stranger connecting first.
    await testing.beforeConnect?.(name);
    const reader = new OutputReader();
    const socket = connect({ path: name, onread: reader.onread });
    ours = socket;
    reader.attach(socket);
    const closed = new Promise<never>((_, reject) => {
      socket.once("error", reject).once("close", () => reject(new Error("closed")));
    });
    closed.catch(() => {});
    await Promise.race([
      new Promise<void>((resolve) => socket.once("connect", () => resolve())),
      closed,
      failed,
      deadline,
    ]);
    socket.write(token);
    theirs = await Promise.race([accepted, closed, failed, deadline]);
    closeServer(server);
    if (!(await Promise.race([presents(theirs, token), closed, deadline]))) {
      theirs.destroy();
      socket.destroy();
      return undefined;
    }
    theirs.pause();
    return reader.output(theirs);
  } catch {
    closeServer(server);
    ours?.destroy();
    theirs?.destroy();
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

function closeServer(server: Server): void {
  try {
    server.close();
  } catch {
    // already closed
  }
}

/** Whether the first bytes `socket` receives are `token` (within a second). */
function presents(socket: Socket, token: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", fail);
      socket.off("error", fail);
      resolve(ok);
    };
    const fail = () => finish(false);
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= token.length) finish(got.equals(token));
    };
    const timer = setTimeout(fail, 1000);
    socket.on("data", onData);
    socket.once("end", fail);
    socket.once("error", fail);
    socket.resume();
  });
}

interface Batch {
  readonly memory: Buffer;
  /** Bytes before this were handed on already (copied out by a flush). */
  start: number;
  fill: number;
  /** False for a flush's copy, which is not reused. */
  readonly pooled: boolean;
}

/** Reads our end of the pair into batches; one consumer iterates them. */
class OutputReader {
  private socket: Socket | undefined;
  private readonly free: Batch[] = [];
  private made = 0;
  private current: Batch | undefined;
  /** Full batches waiting for the consumer. */
  private readonly ready: Batch[] = [];
  /** The batch the consumer holds (given back when it asks for the next). */
  private lent: Batch | undefined;
  /** Read into when no batch was free (the socket is paused then; rarely used). */
  private scratch: Buffer | undefined;
  private paused = false;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private flushTimer: NodeJS.Timeout | undefined;

  readonly onread = {
    buffer: (): Buffer => this.room(),
    callback: (bytes: number, buffer: Buffer): boolean => this.received(bytes, buffer),
  };

  attach(socket: Socket): void {
    this.socket = socket;
    const end = () => {
      this.ended = true;
      this.handOn();
      this.wakeConsumer();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", (error) => {
      this.failure ??= error;
      this.wakeConsumer();
    });
  }

  output(childEnd: Socket): ProgramOutput {
    const close = () => {
      this.stopTimer();
      this.socket?.destroy();
      childEnd.destroy();
    };
    return {
      childEnd,
      childStarted: () => childEnd.destroy(),
      close,
      [Symbol.asyncIterator]: () => this.iterate(close),
    };
  }

  private async *iterate(close: () => void): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        this.giveBack();
        const batch = this.ready.shift();
        if (batch !== undefined) {
          this.lent = batch;
          yield batch.memory.subarray(batch.start, batch.fill);
          continue;
        }
        if (this.failure !== undefined) throw this.failure;
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          this.armFlush();
        });
      }
    } finally {
      this.giveBack();
      close();
    }
  }

  private room(): Buffer {
    this.current ??= this.take();
    if (this.current === undefined) {
      this.scratch ??= Buffer.allocUnsafe(MIN_ROOM);
      return this.scratch;
    }
    return this.current.memory.subarray(this.current.fill);
  }

  private received(bytes: number, buffer: Buffer): boolean {
    if (buffer === this.scratch) {
      // Read while no batch was free: one read after a pause, copied into the batch the
      // consumer gave back since.
      this.current ??= this.take() ?? this.make();
      buffer.copy(this.current.memory, this.current.fill, 0, bytes);
    }
    const current = this.current as Batch;
    current.fill += bytes;
    if (current.memory.length - current.fill < MIN_ROOM) {
      this.handOn();
      this.wakeConsumer();
    } else {
      this.armFlush();
    }
    if (this.current === undefined && this.free.length === 0 && this.made >= BATCHES) {
      this.paused = true;
      return false;
    }
    return true;
  }

  /** Moves the current batch (if it holds anything) to the consumer's queue. */
  private handOn(): void {
    this.stopTimer();
    const current = this.current;
    if (current === undefined || current.fill === current.start) return;
    this.ready.push(current);
    this.current = undefined;
  }

  /**
   * Hands on a copy of the current batch's new bytes, keeping the batch: the socket's next
   * read already goes into the rest of it (a flush on a timer, between reads).
   */
  private handOnCopy(): void {
    this.stopTimer();
    const current = this.current;
    if (current === undefined || current.fill === current.start) return;
    const copy = Buffer.from(current.memory.subarray(current.start, current.fill));
    this.ready.push({ memory: copy, start: 0, fill: copy.length, pooled: false });
    current.start = current.fill;
  }

  private take(): Batch | undefined {
    const batch = this.free.pop();
    if (batch !== undefined) {
      batch.start = 0;
      batch.fill = 0;
      return batch;
    }
    return this.made < BATCHES ? this.make() : undefined;
  }

  private make(): Batch {
    this.made += 1;
    return { memory: Buffer.allocUnsafe(OUTPUT_BATCH), start: 0, fill: 0, pooled: true };
  }

  private giveBack(): void {
    const lent = this.lent;
    if (lent === undefined) return;
    this.lent = undefined;
    if (!lent.pooled) return;
    this.free.push(lent);
    if (this.paused) {
      this.paused = false;
      this.socket?.resume();
    }
  }

  private wakeConsumer(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** While the consumer waits with bytes in a partial batch: hand them on soon. */
  private armFlush(): void {
    if (this.wake === undefined || this.flushTimer !== undefined) return;
    const current = this.current;
    if (current === undefined || current.fill === current.start) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.handOnCopy();
      this.wakeConsumer();
    }, FLUSH_AFTER_MS);
  }

  private stopTimer(): void {
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
  }
}
