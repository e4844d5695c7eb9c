/**
 * What the first block header of an .xz stream declares (the .xz file format 1.1.0, §2.1.1 and
 * §3.1): whether the block carries its compressed and uncompressed sizes, and the dictionary
 * of its LZMA2 filter. decompress.ts reads it from the first bytes of the stream to choose
 * between `xz -T0` and `pixz`: pixz decodes blocks in parallel only when their sizes are in
 * their headers (files from `xz -T`, pixz, most multi-threaded tools), and each of its
 * threads holds a block and its dictionary, which must fit the memory limit.
 *
 * Pure: no I/O. Anything it does not understand (another format, a truncated or malformed
 * header, an unknown filter) gives undefined, and the caller keeps `xz`, which reports it.
 */
import { crc32 } from "node:zlib";

export interface XzFirstBlock {
  /** The block's compressed size, when its header says it. */
  readonly compressedBytes: number | undefined;
  /** The block's uncompressed size, when its header says it. */
  readonly uncompressedBytes: number | undefined;
  /** The LZMA2 dictionary size it declares. */
  readonly dictionaryBytes: number;
}

const STREAM_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const STREAM_HEADER_BYTES = 12;
const LZMA2 = 0x21;
/** Filters that may come before LZMA2 in a chain (delta, BCJ for x86 … RISC-V): no memory of note. */
const SMALL_FILTERS = new Set([0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b]);

/** The first block's header, from the first bytes of an .xz stream; undefined if not readable. */
export function xzFirstBlock(head: Uint8Array): XzFirstBlock | undefined {
  const bytes = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (bytes.length < STREAM_HEADER_BYTES + 1) return undefined;
  if (!bytes.subarray(0, 6).equals(STREAM_MAGIC)) return undefined;
  // Stream flags: a zero byte, then the check type in the low 4 bits (§2.1.1.2).
  if (bytes[6] !== 0 || ((bytes[7] as number) & 0xf0) !== 0) return undefined;
  if (crc32(bytes.subarray(6, 8)) !== bytes.readUInt32LE(8)) return undefined;
  const sizeByte = bytes[STREAM_HEADER_BYTES] as number;
  // 0x00: the index follows at once (a stream without blocks).
  if (sizeByte === 0) return undefined;
  const headerBytes = (sizeByte + 1) * 4;
  const start = STREAM_HEADER_BYTES;
  const end = start + headerBytes;
  if (bytes.length < end) return undefined;
  // The header's CRC32 covers everything before it, from the size byte on (§3.1.7).
  if (crc32(bytes.subarray(start, end - 4)) !== bytes.readUInt32LE(end - 4)) return undefined;
  const flags = bytes[start + 1] as number;
  if ((flags & 0x3c) !== 0) return undefined;
  const filters = (flags & 0x03) + 1;
  const reader = new VliReader(bytes, start + 2, end - 4);
  const compressedBytes = (flags & 0x40) !== 0 ? reader.next() : undefined;
  const uncompressedBytes = (flags & 0x80) !== 0 ? reader.next() : undefined;
  if ((flags & 0x40) !== 0 && compressedBytes === undefined) return undefined;
  if ((flags & 0x80) !== 0 && uncompressedBytes === undefined) return undefined;
  let dictionaryBytes: number | undefined;
  for (let index = 0; index < filters; index++) {
    const id = reader.next();
    const propertiesBytes = reader.next();
    if (id === undefined || propertiesBytes === undefined) return undefined;
    const properties = reader.take(propertiesBytes);
    if (properties === undefined) return undefined;
    const last = index === filters - 1;
    if (last) {
      if (id !== LZMA2 || propertiesBytes !== 1) return undefined;
      dictionaryBytes = lzma2Dictionary(properties[0] as number);
    } else if (!SMALL_FILTERS.has(id)) return undefined;
  }
  if (dictionaryBytes === undefined) return undefined;
  return { compressedBytes, uncompressedBytes, dictionaryBytes };
}

/** LZMA2's dictionary size from its property byte (§5.3.1): 2^11 … 4 GiB - 1. */
function lzma2Dictionary(bits: number): number | undefined {
  if (bits > 40) return undefined;
  if (bits === 40) return 2 ** 32 - 1;
  return (2 | (bits & 1)) * 2 ** (Math.floor(bits / 2) + 11);
}

/** Variable-length integers of the format (§1.2): 7 bits a byte, at most 9 bytes. */
class VliReader {
  private readonly bytes: Buffer;
  private readonly end: number;
  private position: number;

  constructor(bytes: Buffer, start: number, end: number) {
    this.bytes = bytes;
    this.position = start;
    this.end = end;
  }

  next(): number | undefined {
    let value = 0;
    for (let index = 0; index < 9; index++) {
      if (this.position >= this.end) return undefined;
      const byte = this.bytes[this.position++] as number;
      // Numbers stay exact below 2^53; sizes of real files are far below.
      value += (byte & 0x7f) * 2 ** (7 * index);
      if ((byte & 0x80) === 0) {
        // A zero last byte of a multi-byte number is not allowed (no padding zeros).
        if (byte === 0 && index > 0) return undefined;
        return Number.isSafeInteger(value) ? value : undefined;
      }
    }
    return undefined;
  }

  take(count: number): Buffer | undefined {
    if (this.position + count > this.end) return undefined;
    const out = this.bytes.subarray(this.position, this.position + count);
    this.position += count;
    return out;
  }
}
