// A tiny zip writer for tests: every field can be set to a lie, so hostile archives are built
// in code (no checked-in binaries). APPNOTE.TXT layouts: local header 4.3.7, central header
// 4.3.12, Zip64 records 4.3.14-4.3.15, end of central directory 4.3.16.
import { crc32, deflateRawSync } from "node:zlib";

export interface ZipEntrySpec {
  name: string | Buffer;
  /** Uncompressed content. */
  data?: Buffer | string;
  /** Default: deflate (8) for non-empty data, stored (0) otherwise. */
  method?: number;
  /** The bytes stored in the archive, instead of compressing `data`. */
  compressed?: Buffer;
  /** Declared CRC-32, uncompressed and compressed sizes (both headers, unless overridden below). */
  crc?: number;
  size?: number;
  compressedSize?: number;
  /** General purpose flags (bit 11 is added for non-ASCII string names). */
  flags?: number;
  /** Unix mode (type + permissions) for the external attributes' high 16 bits. */
  unixMode?: number;
  externalAttributes?: number;
  versionMadeBy?: number;
  /** Local header overrides. */
  localName?: string | Buffer;
  localMethod?: number;
  localFlags?: number;
  localCrc?: number;
  localSize?: number;
  localCompressedSize?: number;
  /** Sets bit 3, zeroes the local CRC and sizes, and writes a descriptor after the data. */
  dataDescriptor?: boolean;
  /** Descriptor values, when they should lie. */
  descriptor?: { crc?: number; size?: number; compressedSize?: number };
  /** Zip64 extra fields in both headers, with 0xFFFFFFFF markers in the 32-bit fields. */
  zip64?: boolean;
  localExtra?: Buffer;
  centralExtra?: Buffer;
  /** The local header offset written in the central directory (default: where it was written). */
  localOffset?: number;
}

export interface ZipOptions {
  /** Zip64 end records (automatic above 65,535 entries). */
  zip64?: boolean;
  comment?: Buffer | string;
  /** Lies in the end record. */
  cdOffset?: number;
  entryCount?: number;
  /** Bytes written before the first entry (offsets are not adjusted). */
  prefix?: Buffer;
}

export interface ResolvedEntry {
  readonly spec: ZipEntrySpec;
  readonly name: Buffer;
  readonly flags: number;
  readonly method: number;
  readonly stored: Buffer;
  readonly crc: number;
  readonly size: number;
  readonly compressedSize: number;
  readonly externalAttributes: number;
}

const TIME = 0x6000; // 12:00:00
const DATE = 0x5a21; // 2025-01-01

export function resolveEntry(spec: ZipEntrySpec): ResolvedEntry {
  const name = typeof spec.name === "string" ? Buffer.from(spec.name, "utf8") : spec.name;
  const nonAscii = typeof spec.name === "string" && /[^\x20-\x7e]/.test(spec.name);
  const data =
    typeof spec.data === "string" ? Buffer.from(spec.data) : (spec.data ?? Buffer.alloc(0));
  const isDir = name.at(-1) === 0x2f;
  const method = spec.method ?? (data.length > 0 ? 8 : 0);
  const stored = spec.compressed ?? (method === 8 ? deflateRawSync(data) : data);
  const mode = spec.unixMode ?? (isDir ? 0o040755 : 0o100644);
  return {
    spec,
    name,
    flags: spec.flags ?? (nonAscii ? 0x0800 : 0),
    method,
    stored,
    crc: spec.crc ?? crc32(data),
    size: spec.size ?? data.length,
    compressedSize: spec.compressedSize ?? stored.length,
    externalAttributes: spec.externalAttributes ?? ((mode << 16) >>> 0) + (isDir ? 0x10 : 0),
  };
}

function u16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value & 0xffff);
  return b;
}
function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}
function u64(value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  return b;
}
function extraField(id: number, data: Buffer): Buffer {
  return Buffer.concat([u16(id), u16(data.length), data]);
}

/** Local header + stored bytes (+ data descriptor). */
export function localRecord(entry: ResolvedEntry): Buffer {
  const { spec } = entry;
  const dd = spec.dataDescriptor === true;
  const zip64 = spec.zip64 === true;
  const name =
    spec.localName === undefined
      ? entry.name
      : typeof spec.localName === "string"
        ? Buffer.from(spec.localName)
        : spec.localName;
  const flags = spec.localFlags ?? entry.flags | (dd ? 0x08 : 0);
  const crc = spec.localCrc ?? (dd ? 0 : entry.crc);
  const size = spec.localSize ?? (dd ? 0 : entry.size);
  const csize = spec.localCompressedSize ?? (dd ? 0 : entry.compressedSize);
  const extra = Buffer.concat([
    zip64 ? extraField(0x0001, Buffer.concat([u64(size), u64(csize)])) : Buffer.alloc(0),
    spec.localExtra ?? Buffer.alloc(0),
  ]);
  const header = Buffer.concat([
    u32(0x04034b50),
    u16(zip64 ? 45 : 20),
    u16(flags),
    u16(spec.localMethod ?? entry.method),
    u16(TIME),
    u16(DATE),
    u32(crc),
    u32(zip64 ? 0xffffffff : csize),
    u32(zip64 ? 0xffffffff : size),
    u16(name.length),
    u16(extra.length),
    name,
    extra,
  ]);
  const parts = [header, entry.stored];
  if (dd) {
    const d = spec.descriptor ?? {};
    const wide = zip64;
    const dCrc = d.crc ?? entry.crc;
    const dC = d.compressedSize ?? entry.compressedSize;
    const dU = d.size ?? entry.size;
    parts.push(
      Buffer.concat([
        u32(0x08074b50),
        u32(dCrc),
        wide ? u64(dC) : u32(dC),
        wide ? u64(dU) : u32(dU),
      ]),
    );
  }
  return Buffer.concat(parts);
}

export function centralRecord(entry: ResolvedEntry, offset: number): Buffer {
  const { spec } = entry;
  const zip64 = spec.zip64 === true;
  const flags = entry.flags | (spec.dataDescriptor === true ? 0x08 : 0);
  const extra = Buffer.concat([
    zip64
      ? extraField(0x0001, Buffer.concat([u64(entry.size), u64(entry.compressedSize), u64(offset)]))
      : Buffer.alloc(0),
    spec.centralExtra ?? Buffer.alloc(0),
  ]);
  return Buffer.concat([
    u32(0x02014b50),
    u16(spec.versionMadeBy ?? 0x031e),
    u16(zip64 ? 45 : 20),
    u16(flags),
    u16(entry.method),
    u16(TIME),
    u16(DATE),
    u32(entry.crc),
    u32(zip64 ? 0xffffffff : entry.compressedSize),
    u32(zip64 ? 0xffffffff : entry.size),
    u16(entry.name.length),
    u16(extra.length),
    u16(0),
    u16(0),
    u16(0),
    u32(entry.externalAttributes),
    u32(zip64 ? 0xffffffff : offset),
    entry.name,
    extra,
  ]);
}

/** Zip64 EOCD record + locator (when zip64) + EOCD, for a central directory at `cdOffset`. */
export function endRecords(
  count: number,
  cdOffset: number,
  cdSize: number,
  options: { zip64?: boolean; comment?: Buffer | string } = {},
): Buffer {
  const comment = Buffer.from(options.comment ?? "");
  const zip64 = options.zip64 === true || count > 0xffff;
  const parts: Buffer[] = [];
  if (zip64) {
    const recordOffset = cdOffset + cdSize;
    parts.push(
      Buffer.concat([
        u32(0x06064b50),
        u64(44),
        u16(0x031e),
        u16(45),
        u32(0),
        u32(0),
        u64(count),
        u64(count),
        u64(cdSize),
        u64(cdOffset),
      ]),
      Buffer.concat([u32(0x07064b50), u32(0), u64(recordOffset), u32(1)]),
    );
  }
  parts.push(
    Buffer.concat([
      u32(0x06054b50),
      u16(0),
      u16(0),
      u16(zip64 ? 0xffff : count),
      u16(zip64 ? 0xffff : count),
      u32(zip64 ? 0xffffffff : cdSize),
      u32(zip64 ? 0xffffffff : cdOffset),
      u16(comment.length),
      comment,
    ]),
  );
  return Buffer.concat(parts);
}

/** A whole archive in memory. */
export function buildZip(specs: readonly ZipEntrySpec[], options: ZipOptions = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = options.prefix?.length ?? 0;
  if (options.prefix !== undefined) locals.push(options.prefix);
  for (const spec of specs) {
    const entry = resolveEntry(spec);
    const local = localRecord(entry);
    centrals.push(centralRecord(entry, spec.localOffset ?? offset));
    locals.push(local);
    offset += local.length;
  }
  const cd = Buffer.concat(centrals);
  const zip64 = options.zip64 === true || specs.length > 0xffff;
  let end = endRecords(options.entryCount ?? specs.length, offset, cd.length, {
    zip64,
    comment: options.comment ?? "",
  });
  if (options.cdOffset !== undefined) {
    // Rewrite the offset in the classic record (and the Zip64 one) to lie.
    end = Buffer.from(end);
    const eocd = end.length - 22 - Buffer.from(options.comment ?? "").length;
    if (zip64) end.writeBigUInt64LE(BigInt(options.cdOffset), 48);
    else end.writeUInt32LE(options.cdOffset, eocd + 16);
  }
  return Buffer.concat([...locals, cd, end]);
}

/** An Info-ZIP Unicode Path extra field (0x7075) naming `name` for the stored name `raw`. */
export function unicodePathField(raw: Buffer, name: string): Buffer {
  const field = Buffer.concat([Buffer.alloc(9), Buffer.from(name, "utf8")]);
  field.writeUInt16LE(0x7075, 0);
  field.writeUInt16LE(field.length - 4, 2);
  field.writeUInt8(1, 4);
  field.writeUInt32LE(crc32(raw), 5);
  return field;
}
