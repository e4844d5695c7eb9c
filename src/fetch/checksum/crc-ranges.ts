/**
 * CRCs of an object's byte ranges, recorded in any order, folded into the CRC of any span
 * they tile: the whole object for a FULL_OBJECT checksum, or each part for a COMPOSITE one.
 *
 * A range that crosses a cut (a part boundary given to the constructor) is split there while
 * it is hashed, so ranges need not align with parts: `hasher(start)` for bytes streaming in,
 * `add(start, length, digest)` for a CRC computed elsewhere (a worker thread).
 *
 * A piece recorded next to one already there is folded into it at once (combineCrc), unless
 * a cut separates them, so memory is one small record per run of contiguous bytes within a
 * part, whatever the object size, and digest() finds its span by binary search (review,
 * 2026-12-06: downloadObject records one piece per 256 KiB write batch; kept apart and
 * scanned from the start at each digest(), a 1 TiB object held ~4M pieces, ~600 MiB, and a
 * COMPOSITE CRC32's digest per part took parts x pieces steps). So digest()'s span must
 * start and end at cuts, or at the edges of what was recorded: pieces merged within a part
 * cannot be split again.
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
  /** Sorted by start; apart from overlaps (a caller's mistake), by end too. */
  private readonly pieces: Piece[] = [];
  /**
   * Two recorded pieces overlap (a range recorded twice): nothing is merged any more and
   * digest() scans every piece, so that each span touching the overlap is refused.
   */
  private overlapping = false;

  /** `cuts`: offsets no recorded piece may span (part boundaries), in any order. */
  constructor(algorithm: CrcAlgorithm, cuts: Iterable<number> = []) {
    this.algorithm = algorithm;
    this.cuts = [...new Set(cuts)].sort((a, b) => a - b);
    for (const cut of this.cuts) checkOffset("cut", cut);
  }

  /** Pieces held: runs of contiguous recorded bytes within a part (for tests). */
  get pieceCount(): number {
    return this.pieces.length;
  }

  /** Records the CRC of the `length` bytes at `start`. It must not span a cut. */
  add(start: number, length: number, digest: Uint8Array): void {
    checkOffset("start", start);
    checkOffset("length", length);
    if (digest.length !== DIGEST_BYTES[this.algorithm]) {
      throw new RangeError(`CrcRanges: a ${this.algorithm} digest has ${digest.length} bytes`);
    }
    if (length === 0) return;
    const end = start + length;
    const cut = this.nextCut(start);
    if (cut !== undefined && cut < end) {
      throw new RangeError(`CrcRanges: the piece ${start}+${length} spans the cut at ${cut}`);
    }
    // Where it goes: after every piece that starts at or before it.
    const at = this.firstStartingAfter(start);
    const before = this.pieces[at - 1];
    const after = this.pieces[at];
    if (this.overlapping || (before !== undefined && before.start + before.length > start)) {
      this.overlapping = true;
    } else if (after !== undefined && after.start < end) {
      this.overlapping = true;
    }
    if (this.overlapping) {
      this.pieces.splice(at, 0, { start, length, digest: Buffer.from(digest) });
      return;
    }
    let piece: Piece;
    let afterAt = at;
    if (before !== undefined && before.start + before.length === start && !this.isCut(start)) {
      before.digest = combineCrc(this.algorithm, before.digest, digest, length);
      before.length += length;
      piece = before;
    } else {
      piece = { start, length, digest: Buffer.from(digest) };
      this.pieces.splice(at, 0, piece);
      afterAt = at + 1;
    }
    if (after !== undefined && after.start === end && !this.isCut(end)) {
      piece.digest = combineCrc(this.algorithm, piece.digest, after.digest, after.length);
      piece.length += after.length;
      this.pieces.splice(afterAt, 1);
    }
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
    let crc: Buffer = Buffer.alloc(DIGEST_BYTES[this.algorithm]); // the CRC of no bytes
    let at = start;
    // Ends are sorted as starts are (no overlap): the first piece ending after `start`. With
    // an overlap, every piece is looked at, as each may cross the span.
    let index = this.overlapping ? 0 : this.firstEndingAfter(start);
    for (; index < this.pieces.length; index++) {
      const piece = this.pieces[index] as Piece;
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

  /** The index of the first piece that starts after `offset` (pieces.length if none). */
  private firstStartingAfter(offset: number): number {
    let lo = 0;
    let hi = this.pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.pieces[mid] as Piece).start <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The index of the first piece that ends after `offset` (pieces do not overlap). */
  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const piece = this.pieces[mid] as Piece;
      if (piece.start + piece.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private isCut(offset: number): boolean {
    return this.nextCut(offset - 1) === offset;
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
