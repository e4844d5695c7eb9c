/**
 * CRC-64/NVME (reflected polynomial 0x9a6c9329ac4bc9b5, init and final XOR all ones): the
 * checksum S3 adds by default and the only one it keeps as FULL_OBJECT for every upload.
 *
 * Why our own: the 64-bit register is kept as two 32-bit numbers (`lo` = bits 0-31, `hi` =
 * bits 32-63) so the loop stays in V8's fast integer paths (BigInt would be far slower),
 * with slicing-by-8 over little-endian word reads and separate tables for the two halves.
 * Measured here: 790-880 MB/s against 340-420 MB/s for the AWS SDK's JS implementation;
 * slicing-by-16 and interleaved lo/hi tables were both slower.
 */
import { endianness } from "node:os";

/** Big-endian hosts take the byte-at-a-time loop: the word view would read wrong. */
const WORDS = endianness() === "LE";
const EMPTY = new Uint32Array(0);
const POLY_HI = 0x9a6c9329;
const POLY_LO = 0xac4bc9b5;

/** Table k maps a byte to its CRC followed by k zero bytes (k = 0…7), in lo and hi halves. */
function tables(): { lo: Uint32Array; hi: Uint32Array } {
  const lo = new Uint32Array(256 * 8);
  const hi = new Uint32Array(256 * 8);
  for (let i = 0; i < 256; i++) {
    let l = i;
    let h = 0;
    for (let bit = 0; bit < 8; bit++) {
      const carry = l & 1;
      l = (l >>> 1) | (h << 31);
      h >>>= 1;
      if (carry) {
        l ^= POLY_LO;
        h ^= POLY_HI;
      }
    }
    lo[i] = l;
    hi[i] = h;
  }
  for (let i = 256; i < lo.length; i++) {
    const pl = lo[i - 256] as number;
    const ph = hi[i - 256] as number;
    lo[i] = ((pl >>> 8) | (ph << 24)) ^ (lo[pl & 0xff] as number);
    hi[i] = (ph >>> 8) ^ (hi[pl & 0xff] as number);
  }
  return { lo, hi };
}

let cached: { lo: Uint32Array; hi: Uint32Array } | undefined;

/** An incremental CRC-64/NVME; digest() is the 8 bytes big-endian, as S3 encodes it. */
export class Crc64Nvme {
  // The register, complemented (the init value) until digest() complements it back.
  private lo = 0xffffffff;
  private hi = 0xffffffff;
  private readonly tl: Uint32Array;
  private readonly th: Uint32Array;

  constructor() {
    cached ??= tables();
    this.tl = cached.lo;
    this.th = cached.hi;
  }

  update(data: Uint8Array): void {
    const tl = this.tl;
    const th = this.th;
    let lo = this.lo;
    let hi = this.hi;
    let i = 0;
    const n = data.length;
    if (WORDS) {
      while (i < n && ((data.byteOffset + i) & 3) !== 0) {
        const x = (lo ^ (data[i++] as number)) & 0xff;
        lo = ((lo >>> 8) | (hi << 24)) ^ (tl[x] as number);
        hi = (hi >>> 8) ^ (th[x] as number);
      }
      const blocks = (n - i) >>> 3;
      // Short inputs can end the byte steps unaligned, where even an empty view is refused.
      const w =
        blocks === 0 ? EMPTY : new Uint32Array(data.buffer, data.byteOffset + i, blocks * 2);
      for (let k = 0; k < w.length; k += 2) {
        const a = lo ^ (w[k] as number);
        const b = hi ^ (w[k + 1] as number);
        const a0 = 1792 + (a & 0xff);
        const a1 = 1536 + ((a >>> 8) & 0xff);
        const a2 = 1280 + ((a >>> 16) & 0xff);
        const a3 = 1024 + (a >>> 24);
        const b0 = 768 + (b & 0xff);
        const b1 = 512 + ((b >>> 8) & 0xff);
        const b2 = 256 + ((b >>> 16) & 0xff);
        const b3 = b >>> 24;
        lo =
          (tl[a0] as number) ^
          (tl[a1] as number) ^
          (tl[a2] as number) ^
          (tl[a3] as number) ^
          (tl[b0] as number) ^
          (tl[b1] as number) ^
          (tl[b2] as number) ^
          (tl[b3] as number);
        hi =
          (th[a0] as number) ^
          (th[a1] as number) ^
          (th[a2] as number) ^
          (th[a3] as number) ^
          (th[b0] as number) ^
          (th[b1] as number) ^
          (th[b2] as number) ^
          (th[b3] as number);
      }
      i += blocks * 8;
    }
    while (i < n) {
      const x = (lo ^ (data[i++] as number)) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ (tl[x] as number);
      hi = (hi >>> 8) ^ (th[x] as number);
    }
    this.lo = lo;
    this.hi = hi;
  }

  digest(): Buffer {
    const out = Buffer.allocUnsafe(8);
    out.writeUInt32BE(~this.hi >>> 0, 0);
    out.writeUInt32BE(~this.lo >>> 0, 4);
    return out;
  }
}
