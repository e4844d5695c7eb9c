/**
 * CRCs of an object's byte ranges, recorded in any order, folded into the CRC of any span
 * they tile: the whole object for a FULL_OBJECT checksum, or each part for a COMPOSITE one.
 *
 * A range that crosses a cut (a part boundary given to the constructor) is split there while
 * it is hashed, so ranges need not align with parts: `hasher(start)` for bytes streaming in,
 * `add(start, length, digest)` for a CRC computed elsewhere (a worker thread). Memory is one
 * small record per piece, whatever the object size.
 *
 * @example
 *   const crcs = new CrcRanges("CRC32C", partBoundaries);   // cuts are optional
 *   const h = crcs.hasher(range.start);                     // one per ranged GET
 *   for await (const chunk of body) h.update(chunk);
 *   h.end();
 *   crcs.digest(0, size);              // FULL_OBJECT CRC, once every range has ended
 *   crcs.digest(part.start, part.end); // one part's CRC (start and end must be cuts)
 */
import { type CrcAlgorithm, createChecksum, DIGEST_BYTES } from "./algorithms.ts";
import { combineCrc } from "./combine.ts";

interface Piece {
  start: number;
  length: number;
  digest: Buffer;
}

export interface CrcRangeHasher {
  update(bytes: Uint8Array): void;
  /** Records the range's pieces; the hasher takes no more bytes. */
  end(): void;
}

export class CrcRanges {
  readonly algorithm: CrcAlgorithm;
  private readonly cuts: readonly number[];
  private readonly pieces: Piece[] = [];
  private sorted = true;

  /** `cuts`: offsets no recorded piece may span (part boundaries), in any order. */
  constructor(algorithm: CrcAlgorithm, cuts: Iterable<number> = []) {
    this.algorithm = algorithm;
    this.cuts = [...new Set(cuts)].sort((a, b) => a - b);
    for (const cut of this.cuts) checkOffset("cut", cut);
  }

  /** Records the CRC of the `length` bytes at `start`. It must not span a cut. */
  add(start: number, length: number, digest: Uint8Array): void {
    checkOffset("start", start);
    checkOffset("length", length);
    if (digest.length !== DIGEST_BYTES[this.algorithm]) {
      throw new RangeError(`CrcRanges: a ${this.algorithm} digest has ${digest.length} bytes`);
    }
    if (length === 0) return;
    const cut = this.nextCut(start);
    if (cut !== undefined && cut < start + length) {
      throw new RangeError(`CrcRanges: the piece ${start}+${length} spans the cut at ${cut}`);
    }
    const last = this.pieces.at(-1);
    if (last !== undefined && last.start > start) this.sorted = false;
    this.pieces.push({ start, length, digest: Buffer.from(digest) });
  }

  /** A hasher for bytes that start at `start` and follow on contiguously. */
  hasher(start: number): CrcRangeHasher {
    checkOffset("start", start);
    let pieceStart = start;
    let offset = start;
    let checksum = createChecksum(this.algorithm);
    let ended = false;
    const close = () => {
      this.add(pieceStart, offset - pieceStart, checksum.digest());
      pieceStart = offset;
      checksum = createChecksum(this.algorithm);
    };
    return {
      update: (bytes) => {
        if (ended) throw new Error("CrcRanges: update() after end()");
        let rest = bytes;
        while (rest.length > 0) {
          const cut = this.nextCut(offset);
          const take = cut === undefined ? rest.length : Math.min(rest.length, cut - offset);
          checksum.update(rest.subarray(0, take));
          rest = rest.subarray(take);
          offset += take;
          if (offset === cut) close();
        }
      },
      end: () => {
        if (ended) return;
        ended = true;
        close();
      },
    };
  }

  /**
   * The CRC of bytes [start, end), folded from the recorded pieces. Throws when they do not
   * tile the span exactly (a gap, an overlap, or a piece crossing start or end): a range
   * missing or recorded twice is the caller's mistake, not the data's.
   */
  digest(start: number, end: number): Buffer {
    checkOffset("start", start);
    checkOffset("end", end);
    if (end < start) throw new RangeError(`CrcRanges: end ${end} < start ${start}`);
    if (!this.sorted) {
      this.pieces.sort((a, b) => a.start - b.start);
      this.sorted = true;
    }
    let crc: Buffer = Buffer.alloc(DIGEST_BYTES[this.algorithm]); // the CRC of no bytes
    let at = start;
    for (const piece of this.pieces) {
      if (piece.start + piece.length <= start) continue;
      if (piece.start >= end) break;
      if (piece.start !== at || piece.start + piece.length > end) {
        throw new RangeError(
          `CrcRanges: the recorded ranges do not tile ${start}-${end}: ${piece.start}+${piece.length} where ${at} was expected`,
        );
      }
      crc = combineCrc(this.algorithm, crc, piece.digest, piece.length);
      at += piece.length;
    }
    if (at !== end) {
      throw new RangeError(
        `CrcRanges: the recorded ranges cover ${start}-${at}, not ${start}-${end}`,
      );
    }
    return crc;
  }

  /** The first cut strictly after `offset`. */
  private nextCut(offset: number): number | undefined {
    let lo = 0;
    let hi = this.cuts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.cuts[mid] as number) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return this.cuts[lo];
  }
}

function checkOffset(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`CrcRanges: ${name} must be a whole number >= 0, got ${value}`);
  }
}
