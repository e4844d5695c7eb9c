/**
 * Whether bzip2 data ends where its last stream ends.
 *
 * Why: `lbzip2 -dc` and `bzip2 -dc` decode a file's streams and ignore whatever follows the
 * last one (bzip2 warns "trailing garbage after EOF ignored" and exits 0; lbzip2 says
 * nothing), where gzip (zlib) and xz refuse it: a .tar.bz2 with bytes appended was published
 * as if whole (sessions 23-24's notes; SPEC §5: corrupt archives fail clearly).
 *
 * A bzip2 stream ends with a 48-bit end-of-stream marker and the 32-bit CRC of the stream,
 * then fewer than 8 bits of padding to a whole byte. So the last 11 bytes of data that ends
 * with its stream hold the marker at one of 8 bit offsets, whatever the number of streams
 * (pbzip2 and lbzip2 write several). Bytes appended pass only if they end with the marker
 * themselves: 8 chances in 2^48.
 *
 * Zeros after the last stream are accepted, as after gzip (gunzip.ts): they are
 * the padding of a tape's or dd's blocking, which GNU tar, bzip2 and lbzip2 accept; a
 * .tar.bz2 padded with 4 KiB of zeros was refused (review, 2026-12-06). The stream's own last
 * bytes may be zeros too (a CRC, the padding bits), so the marker is looked for at the end of
 * the data and at every byte within the zeros that end it, as far as it can reach.
 */
import { DsfetchError } from "../errors.ts";

const END_MARKER = 0x177245385090n;
const MARKER_BITS = 0xffffffffffffn;
/** 48 + 32 bits, and up to 7 of padding. */
export const BZIP2_TAIL_BYTES = 11;

/** Whether the last BZIP2_TAIL_BYTES of bzip2 data (`tail`) end a stream. */
export function endsWithBzip2Stream(tail: Uint8Array): boolean {
  let value = 0n;
  for (const byte of tail.subarray(tail.length - BZIP2_TAIL_BYTES)) {
    value = (value << 8n) | BigInt(byte);
  }
  for (let padding = 0n; padding < 8n; padding++) {
    if (((value >> (padding + 32n)) & MARKER_BITS) === END_MARKER) return true;
  }
  return false;
}

/** Zero bytes to append to the tail (see Bzip2End.watch). */
const ZEROS = new Uint8Array(BZIP2_TAIL_BYTES);
/** Held-back zeros that go to the decoder after all (data followed them): pieces of this size. */
const ZERO_PIECE = 1 << 20;

/**
 * Watches the bzip2 data given to a decoder (watch) and, once the decoder has decoded all of
 * it without error, fails with ARCHIVE_INVALID when bytes other than zeros follow the last
 * stream (afterDecoding). Data cut short is the decoder's to report (it says more), hence after.
 */
export class Bzip2End {
  /** The last bytes of the data up to its last byte that is not zero. */
  private readonly tail = Buffer.alloc(BZIP2_TAIL_BYTES);
  private held = 0;
  /** Zero bytes after `tail` so far (the data's end, or padding after it), held back. */
  private zeros = 0;

  /**
   * `source`, passed through, its last bytes kept; zeros at the end of what came so far are
   * held back until more data follows them. At the end only those that end the last stream
   * go to the decoder: unbzip2-stream refuses anything after it, zeros too ("No magic number
   * found"), and the programs ignore them.
   */
  async *watch(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      let end = chunk.length;
      while (end > 0 && chunk[end - 1] === 0) end--;
      if (end === 0) {
        this.zeros += chunk.length;
        continue;
      }
      // Kept before the chunk is passed on: its memory may be reused once it is taken. The
      // zeros held back are data, not padding: more data follows them.
      const zeros = this.zeros;
      this.keep(ZEROS.subarray(0, Math.min(zeros, BZIP2_TAIL_BYTES)));
      this.keep(chunk.subarray(Math.max(0, end - BZIP2_TAIL_BYTES), end));
      this.zeros = chunk.length - end;
      yield* zeroBytes(zeros);
      yield end === chunk.length ? chunk : chunk.subarray(0, end);
    }
    yield* zeroBytes(this.streamEnd() ?? this.zeros);
  }

  /** `decoded`, passed through; at its end, the check. */
  async *afterDecoding(
    decoded: AsyncIterable<Buffer>,
    dataset: string | undefined,
  ): AsyncGenerator<Buffer> {
    yield* decoded;
    // Fewer bytes than a stream's end: the decoder has refused them already.
    if (this.held === BZIP2_TAIL_BYTES && this.streamEnd() === undefined) {
      throw new DsfetchError(
        "ARCHIVE_INVALID",
        `${dataset === undefined ? "" : `${dataset}: `}the bzip2 data does not end with the end of a bzip2 stream: bytes follow it (bzip2 and lbzip2 would ignore them)`,
        {
          ...(dataset === undefined ? {} : { dataset }),
          hint: "the archive is damaged or has data appended to it (zeros alone are accepted): upload it again as bzip2, lbzip2 or pbzip2 wrote it",
        },
      );
    }
  }

  /**
   * How many of the zeros after the last non-zero byte belong to the last stream, when a
   * stream ends there or within them; undefined otherwise. The stream's own last bytes may be
   * zeros (its CRC, the padding bits); eleven zeros hold no end marker, hence at most
   * BZIP2_TAIL_BYTES - 1 of them.
   */
  private streamEnd(): number | undefined {
    if (this.held < BZIP2_TAIL_BYTES) return undefined;
    const candidate = Buffer.alloc(BZIP2_TAIL_BYTES);
    for (let zeros = 0; zeros <= Math.min(this.zeros, BZIP2_TAIL_BYTES - 1); zeros++) {
      candidate.fill(0);
      this.tail.copy(candidate, 0, zeros);
      if (endsWithBzip2Stream(candidate)) return zeros;
    }
    return undefined;
  }

  /** Appends `bytes` to the tail, keeping its last BZIP2_TAIL_BYTES. */
  private keep(bytes: Uint8Array): void {
    const { tail } = this;
    if (bytes.length >= BZIP2_TAIL_BYTES) {
      tail.set(bytes.subarray(bytes.length - BZIP2_TAIL_BYTES));
      this.held = BZIP2_TAIL_BYTES;
    } else if (bytes.length > 0) {
      const keep = Math.min(this.held, BZIP2_TAIL_BYTES - bytes.length);
      tail.copy(tail, 0, this.held - keep, this.held);
      tail.set(bytes, keep);
      this.held = keep + bytes.length;
    }
  }
}

/** `count` zero bytes, in pieces (fresh ones: a decoder may hold what it was given). */
function* zeroBytes(count: number): Generator<Buffer> {
  for (let left = count; left > 0; left -= ZERO_PIECE) {
    yield Buffer.alloc(Math.min(left, ZERO_PIECE));
  }
}
