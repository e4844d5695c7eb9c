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

/**
 * Watches the bzip2 data given to a decoder (watch) and, once the decoder has decoded all of
 * it without error, fails with ARCHIVE_INVALID when bytes follow the last stream
 * (afterDecoding). Data cut short is the decoder's to report (it says more), hence after.
 */
export class Bzip2End {
  private readonly tail = Buffer.alloc(BZIP2_TAIL_BYTES);
  private held = 0;

  /** `source`, passed through, its last bytes kept. */
  async *watch(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const { tail } = this;
    for await (const chunk of source) {
      // Copied before the chunk is passed on: its memory may be reused once it is taken.
      if (chunk.length >= BZIP2_TAIL_BYTES) {
        chunk.copy(tail, 0, chunk.length - BZIP2_TAIL_BYTES);
        this.held = BZIP2_TAIL_BYTES;
      } else {
        const keep = Math.min(this.held, BZIP2_TAIL_BYTES - chunk.length);
        tail.copy(tail, 0, this.held - keep, this.held);
        chunk.copy(tail, keep);
        this.held = keep + chunk.length;
      }
      yield chunk;
    }
  }

  /** `decoded`, passed through; at its end, the check. */
  async *afterDecoding(
    decoded: AsyncIterable<Buffer>,
    dataset: string | undefined,
  ): AsyncGenerator<Buffer> {
    yield* decoded;
    if (this.held === BZIP2_TAIL_BYTES && !endsWithBzip2Stream(this.tail)) {
      throw new DsfetchError(
        "ARCHIVE_INVALID",
        `${dataset === undefined ? "" : `${dataset}: `}the bzip2 data does not end with the end of a bzip2 stream: bytes follow it (bzip2 and lbzip2 would ignore them)`,
        {
          ...(dataset === undefined ? {} : { dataset }),
          hint: "the archive is damaged or has data appended to it: upload it again as bzip2, lbzip2 or pbzip2 wrote it",
        },
      );
    }
  }
}
