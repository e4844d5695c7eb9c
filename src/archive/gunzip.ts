/**
 * gzip (RFC 1952) decoded by node:zlib's raw inflate, the members' framing (headers, trailers,
 * what follows the last member) read here.
 *
 * Why not createGunzip: zlib computes the CRC-32 of every decompressed byte to check each
 * member's trailer, and the tar extraction computes it again for each file's digest (SPEC §2,
 * tar-extract.ts): 0.5 s of the 3.9 s the decompression thread spends on the bench's 1 GiB
 * .tar.gz (raw inflate 3.3 s), on the critical path of a .tar.gz fetch. Here a member's
 * trailer is checked against the CRC-32 the consumer keeps of what it took (`taken`: the tar
 * extractor folds its files' CRCs into it, tar-extract.ts), or against one computed here
 * when no consumer keeps one. The trailer is checked either way: a flipped bit in stored
 * (level 0) data passes the inflate and only the CRC catches it.
 *
 * Framing as zlib's gunzip, messages in zlib's words ("incorrect header check", "unknown
 * compression method", "incorrect data check", …): concatenated members decode as one
 * stream; after the last member, zeros (a tape's or dd's blocking) are accepted and any other
 * byte is refused (gzipTrailing). Unlike zlib, where the stream ends is always known here: the
 * message says exactly where the appended bytes start.
 *
 * The input's memory may be reused by the source once the next chunk is asked for
 * (extract-worker.ts gives its batches back then): the inflate is given one chunk at a time and
 * is done with it (its write callback) before the next is asked for; header and trailer bytes
 * that span chunks are copied.
 */
import { constants, crc32, createInflateRaw, inflateRawSync } from "node:zlib";
import { combineCrc32 } from "../fetch/checksum/combine.ts";
import { untilOrAborted } from "../util/until-or-aborted.ts";

/** The CRC-32 of every decompressed byte a consumer took so far, and how many it took. */
export interface TakenCrc {
  readonly crc: number;
  readonly bytes: number;
}

/**
 * Where the consumer of the decompressed bytes tells the CRC-32 of those it took: set by it
 * (tar-extract.ts) before it asks for the first byte. Read at every member's start and end,
 * when the consumer has taken every byte yielded so far.
 */
export interface TakenCrcSource {
  read?: (() => TakenCrc) | undefined;
}

/** Why the gzip data is refused: zlib's words, or ours in its style. */
export class GzipFramingError extends Error {}

/** Bytes after the last member that are not zeros: where the stream ends, and what followed. */
export class GzipTrailingData extends Error {
  /** Where the gzip stream ends (bytes of the input before it). */
  readonly end: number;
  /** Bytes of the input read (all of it when `whole`). */
  readonly total: number;
  readonly whole: boolean;
  constructor(end: number, total: number, whole: boolean) {
    super("bytes after the end of the gzip stream that are not a gzip member");
    this.end = end;
    this.total = total;
    this.whole = whole;
  }
}

export interface GunzipOptions {
  readonly signal?: AbortSignal | undefined;
  readonly taken?: TakenCrcSource | undefined;
  /** The inflate's output chunks (zlib's chunkSize). */
  readonly chunkSize: number;
  /** Output the inflate may hold before the reader takes it. */
  readonly outputBuffer: number;
  /** Small input chunks are joined up to this many bytes before they go to the inflate. */
  readonly inputBatch: number;
  /** Bytes read on past appended data to count them, at most. */
  readonly trailingCountBytes: number;
}

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;
const FRESERVED = 0xe0;

/**
 * The decompressed bytes of the gzip data in `source`. Throws GzipFramingError (corrupt,
 * truncated, a trailer that does not match), GzipTrailingData, the inflate's own errors (its
 * `code` is zlib's), and the source's errors unchanged.
 */
export async function* gunzip(
  source: AsyncIterable<Buffer>,
  options: GunzipOptions,
): AsyncGenerator<Buffer> {
  const input = new Input(joinedSmall(source, options.inputBatch), options.signal);
  try {
    let decoded = 0;
    let lastMemberBytes = 0;
    for (let member = 0; ; member++) {
      const start = input.position;
      if (member > 0 && !(await nextIsMember(input, start, options))) return;
      await readHeader(input);
      const from = takenAt(options.taken, decoded);
      let ownCrc = 0;
      let memberBytes = 0;
      // Tried where the member before was small too: members are mostly of one size, and
      // the attempt on a larger one decodes SMALL_MEMBER_OUTPUT for nothing (members of 257
      // KiB took 3x zlib's time: review, 2026-12-08).
      const small =
        member > 0 && lastMemberBytes <= SMALL_MEMBER_OUTPUT ? await smallMember(input) : undefined;
      for await (const out of small !== undefined ? [small] : inflateMember(input, options)) {
        if (from === undefined) ownCrc = crc32(out, ownCrc);
        if (out.length === 0) continue;
        memberBytes += out.length;
        decoded += out.length;
        yield out;
        options.signal?.throwIfAborted();
      }
      const trailer = await input.take(8);
      if (trailer === undefined) throw new GzipFramingError("unexpected end of file");
      let crc = ownCrc;
      if (from !== undefined) {
        const to = takenAt(options.taken, decoded) as TakenCrc;
        // crc(A‖B) = crc(A)·x^(8|B|) ⊕ crc(B): the member's own CRC from the consumer's two.
        crc = (to.crc ^ combineCrc32(from.crc, 0, memberBytes)) >>> 0;
      }
      if (trailer.readUInt32LE(0) !== crc) throw new GzipFramingError("incorrect data check");
      if (trailer.readUInt32LE(4) !== memberBytes % 2 ** 32) {
        throw new GzipFramingError("incorrect length check");
      }
      lastMemberBytes = memberBytes;
    }
  } finally {
    input.stop();
  }
}

/** The consumer's CRC now; it must have taken exactly the `decoded` bytes yielded so far. */
function takenAt(taken: TakenCrcSource | undefined, decoded: number): TakenCrc | undefined {
  const now = taken?.read?.();
  if (now !== undefined && now.bytes !== decoded) {
    // A consumer that reads ahead or skips: its CRC says nothing about these bytes.
    throw new Error(
      `gunzip: the consumer took ${now.bytes} decompressed bytes where ${decoded} were given`,
    );
  }
  return now;
}

/**
 * After a member: whether another starts here. At the end of the input, or before zeros only
 * (read to the end), no; any other byte throws GzipTrailingData.
 */
async function nextIsMember(input: Input, end: number, options: GunzipOptions): Promise<boolean> {
  const first = await input.peek(0);
  if (first === undefined) return false;
  if (first === 0x1f && (await input.peek(1)) === 0x8b) return true;
  // Zeros: skipped to the first byte that is not one, or the end.
  while (await input.fill()) {
    options.signal?.throwIfAborted();
    const rest = input.rest();
    let at = 0;
    while (at < rest.length && rest[at] === 0) at++;
    if (at < rest.length) {
      // Counted to the end, but not past trailingCountBytes more: a refused archive is not
      // downloaded whole for a count (review, 2026-12-06).
      const until = input.position + options.trailingCountBytes;
      while (input.position < until && (await input.fill())) {
        options.signal?.throwIfAborted();
        input.rest();
      }
      const whole = !(await input.fill());
      throw new GzipTrailingData(end, input.position, whole);
    }
  }
  return false;
}

/** Reads and checks a member's header (RFC 1952 2.3.1), leaving the input at its deflate data. */
async function readHeader(input: Input): Promise<void> {
  // Not gzip at all is said as such however short it is, as zlib does from its second byte.
  const magic = [await input.peek(0), await input.peek(1)];
  if (magic.some((byte, i) => byte !== undefined && byte !== [0x1f, 0x8b][i])) {
    throw new GzipFramingError("incorrect header check");
  }
  const fixed = await input.take(10);
  // Nothing at all, or a header cut short (zlib's words for both).
  if (fixed === undefined) throw new GzipFramingError("unexpected end of file");
  if (fixed[2] !== 8) throw new GzipFramingError("unknown compression method");
  const flags = fixed[3] ?? 0;
  if (flags & FRESERVED) throw new GzipFramingError("unknown header flags set");
  // The header's own CRC (FHCRC), of every byte before it, as they pass: names and comments
  // are skipped, never kept (zlib bounds neither: a bound here refused a 5 MiB name that came
  // in pieces and took it whole: conformance tester, 2026-12-08).
  let headerCrc = flags & FHCRC ? crc32(fixed) : 0;
  const take = async (n: number): Promise<Buffer> => {
    const bytes = await input.take(n);
    if (bytes === undefined) throw new GzipFramingError("unexpected end of file");
    if (flags & FHCRC) headerCrc = crc32(bytes, headerCrc);
    return bytes;
  };
  if (flags & FEXTRA) await take((await take(2)).readUInt16LE(0));
  for (const flag of [FNAME, FCOMMENT]) {
    if ((flags & flag) === 0) continue;
    const ended = await input.skipPastNul((piece) => {
      if (flags & FHCRC) headerCrc = crc32(piece, headerCrc);
    });
    if (!ended) throw new GzipFramingError("unexpected end of file");
  }
  if (flags & FHCRC) {
    const stored = await input.take(2);
    if (stored === undefined) throw new GzipFramingError("unexpected end of file");
    if ((headerCrc & 0xffff) !== stored.readUInt16LE(0)) {
      throw new GzipFramingError("header crc mismatch");
    }
  }
}

/** Decompressed bytes of a member decoded at once (smallMember), at most. */
const SMALL_MEMBER_OUTPUT = 256 << 10;

/**
 * A member after the first one, decoded at once on this thread when its deflate data ends in
 * the current chunk and holds at most SMALL_MEMBER_OUTPUT bytes; else undefined, the input
 * as it was (the member is streamed: inflateMember). A stream per member cost ~0.2-0.3 ms
 * (its set-up and the thread-pool trips): a 256 MiB bgzip-style file of 64 KiB members took
 * 1.1-1.4 s instead of zlib's gunzip's 0.2-0.3 s, 20,000 empty members 4.7 s. An attempt on
 * a member that turns out larger decodes at most SMALL_MEMBER_OUTPUT bytes for nothing.
 */
async function smallMember(input: Input): Promise<Buffer | undefined> {
  if (!(await input.fill())) return undefined;
  const rest = input.rest();
  let decoded: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    decoded = inflateRawSync(rest, {
      info: true,
      maxOutputLength: SMALL_MEMBER_OUTPUT,
      // Input that ends inside the member is no error here: it is told by what was taken.
      finishFlush: constants.Z_SYNC_FLUSH,
    }) as unknown as typeof decoded;
  } catch {
    // Larger, or corrupt: streamed, which says why it fails if it does.
    input.unread(rest.length);
    return undefined;
  }
  const took = decoded.engine.bytesWritten;
  // All of it taken: the member may go on in the next chunk.
  if (took >= rest.length) {
    input.unread(rest.length);
    return undefined;
  }
  input.unread(rest.length - took);
  return decoded.buffer;
}

/**
 * One member's deflate data through a raw inflate, its output yielded; the input is left just
 * past the deflate data (at the trailer). The inflate takes one input chunk at a time: where it
 * took less than a whole chunk, its stream ended there (zlib.js ends the output then), and the
 * rest goes back to the input.
 */
async function* inflateMember(input: Input, options: GunzipOptions): AsyncGenerator<Buffer> {
  const inflate = createInflateRaw({
    chunkSize: options.chunkSize,
    // zlib passes its options on to stream.Transform; the types only list zlib's own.
    ...({ readableHighWaterMark: options.outputBuffer } as object),
  });
  let feedError: unknown;
  const feeding = (async () => {
    try {
      while (await input.fill()) {
        const chunk = input.rest();
        const before = inflate.bytesWritten;
        await new Promise<void>((resolve, reject) => {
          inflate.write(chunk, (error) => (error ? reject(error) : resolve()));
        });
        const took = inflate.bytesWritten - before;
        if (took < chunk.length) {
          input.unread(chunk.length - took);
          break;
        }
      }
      // Its end, or the end of the input: a stream not whole by then is "unexpected end of
      // file" (zlib's error, on the output).
      inflate.end();
    } catch (error) {
      // The source failed (passed on unchanged), or the inflate did (its error is the
      // output's too).
      feedError = error;
      inflate.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  })();
  let done = false;
  try {
    for await (const out of inflate) yield out as Buffer;
    done = true;
  } catch (error) {
    // The feeder's error first: the source's, passed on unchanged (it destroyed the inflate
    // with it).
    throw feedError ?? error;
  } finally {
    // Stopped early or failed: the feeder's pending write fails with the inflate. It is not
    // waited for: it may be waiting for input that never comes.
    if (!done) inflate.destroy();
  }
  // Ended: the feeder is past its last read (it ended the inflate, or the stream ended within
  // the chunk it wrote last and it is giving the rest back).
  await feeding;
  if (feedError !== undefined) throw feedError;
}

/** Chunks under `size` bytes joined (copied) into chunks of `size`; larger ones as they are. */
async function* joinedSmall(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let batch: Buffer | undefined;
  let fill = 0;
  for await (const chunk of source) {
    if (chunk.length >= size) {
      if (fill > 0) {
        yield (batch as Buffer).subarray(0, fill);
        batch = undefined;
        fill = 0;
      }
      yield chunk;
      continue;
    }
    // Copied before the next chunk is asked for: the source may reuse this one's memory.
    if (batch !== undefined && fill + chunk.length > size) {
      yield batch.subarray(0, fill);
      batch = undefined;
      fill = 0;
    }
    batch ??= Buffer.allocUnsafe(size);
    chunk.copy(batch, fill);
    fill += chunk.length;
  }
  if (fill > 0) yield (batch as Buffer).subarray(0, fill);
}

/**
 * The input, read as a position in it: the current chunk, valid until the next is asked for
 * (fill()); bytes kept across chunks are copied (take).
 */
class Input {
  private readonly iterator: AsyncIterator<Buffer>;
  private chunk: Buffer = Buffer.alloc(0);
  private at = 0;
  /** Bytes of the input before `chunk`. */
  private base = 0;
  private ended = false;
  private stopped = false;
  private readonly signal: AbortSignal | undefined;

  constructor(source: AsyncIterable<Buffer>, signal: AbortSignal | undefined) {
    this.iterator = source[Symbol.asyncIterator]();
    this.signal = signal;
  }

  /** Bytes of the input before the next one to be read. */
  get position(): number {
    return this.base + this.at;
  }

  /** Makes a byte available in the current chunk; false at the end of the input. */
  async fill(): Promise<boolean> {
    while (this.at >= this.chunk.length) {
      if (this.ended) return false;
      const step = await untilOrAborted(this.iterator.next(), this.signal);
      if (step.done === true) {
        this.ended = true;
        return false;
      }
      this.base += this.chunk.length;
      this.chunk = step.value;
      this.at = 0;
    }
    return true;
  }

  /** The rest of the current chunk, read (valid until the next fill()). */
  rest(): Buffer {
    const rest = this.chunk.subarray(this.at);
    this.at = this.chunk.length;
    return rest;
  }

  /** Gives back the last `n` bytes that rest() returned. */
  unread(n: number): void {
    this.at -= n;
  }

  /** The byte `ahead` bytes past the position (0 or 1), not read; undefined past the end. */
  async peek(ahead: 0 | 1): Promise<number | undefined> {
    if (!(await this.fill())) return undefined;
    if (this.at + ahead < this.chunk.length) return this.chunk[this.at + ahead];
    // The last byte of this chunk, and the next chunk's first: joined (copied; only where a
    // member ends one byte before a chunk does), both still unread.
    const kept = Buffer.from(this.chunk.subarray(this.at));
    const keptAt = this.position;
    this.at = this.chunk.length;
    const more = await this.fill();
    this.chunk = Buffer.concat([kept, more ? this.chunk.subarray(this.at) : Buffer.alloc(0)]);
    this.base = keptAt;
    this.at = 0;
    return more ? this.chunk[ahead] : undefined;
  }

  /** Exactly `n` bytes (copied), or undefined when the input ends first. */
  async take(n: number): Promise<Buffer | undefined> {
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) return undefined;
      const k = Math.min(n - got, this.chunk.length - this.at);
      this.chunk.copy(out, got, this.at, this.at + k);
      this.at += k;
      got += k;
    }
    return out;
  }

  /**
   * Reads past the next NUL, each piece read (the NUL with the last) given to `seen` while it
   * is valid; false when the input ends first.
   */
  async skipPastNul(seen: (piece: Buffer) => void): Promise<boolean> {
    for (;;) {
      if (!(await this.fill())) return false;
      const nul = this.chunk.indexOf(0, this.at);
      const end = nul < 0 ? this.chunk.length : nul + 1;
      seen(this.chunk.subarray(this.at, end));
      this.at = end;
      if (nul >= 0) return true;
    }
  }

  /** Tells the source to stop (not awaited: it may be waiting for input that never comes). */
  stop(): void {
    if (this.ended || this.stopped) return;
    this.stopped = true;
    const iterator = this.iterator;
    Promise.resolve()
      .then(() => iterator.return?.())
      .catch(() => {});
  }
}
