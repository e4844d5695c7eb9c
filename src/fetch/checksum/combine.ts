/**
 * CRC of a concatenation from the CRCs of its pieces: combineCrc(alg, crc(A), crc(B), |B|)
 * = crc(A‖B), so ranges fetched in parallel can be checksummed independently, in any order,
 * and folded into the FULL_OBJECT CRC S3 reports.
 *
 * The method is zlib's crc32_combine (1.2.12+): for CRCs whose initial value and final XOR
 * are equal (all ones, for CRC32, CRC32C and CRC64NVME), crc(A‖B) = crc(A)·x^(8|B|) mod P
 * ⊕ crc(B). x^(8|B|) is built from a table of x^(2^k) mod P by square-and-multiply, so the
 * cost grows with log |B|, not |B|. Polynomials are in the CRC's reflected bit order: the
 * top bit is the coefficient of x^0. Tables have 64 entries so lengths up to 2^53 bytes
 * (x^(2^56)) need no wrap-around assumption about the polynomial's order.
 */
import {
  CRC32_POLY,
  CRC32C_POLY,
  type CrcAlgorithm,
  DIGEST_BYTES,
  isCrcAlgorithm,
} from "./algorithms.ts";

const POWERS = 64;

/** a·b mod P for 32-bit reflected polynomials. */
function mul32(a: number, b: number, poly: number): number {
  let p = 0;
  for (let m = 0x80000000; m !== 0 && a !== 0; m >>>= 1) {
    if (a & m) {
      p ^= b;
      a &= ~m;
    }
    b = b & 1 ? (b >>> 1) ^ poly : b >>> 1;
  }
  return p >>> 0;
}

/** A 64-bit polynomial as two 32-bit halves: hi holds x^0…x^31 (x^0 at its top bit). */
interface U64 {
  hi: number;
  lo: number;
}

const CRC64_POLY: U64 = { hi: 0x9a6c9329, lo: 0xac4bc9b5 };

function mul64(a: U64, b: U64): U64 {
  let { hi: ah, lo: al } = a;
  let { hi: bh, lo: bl } = b;
  let ph = 0;
  let pl = 0;
  for (let bit = 0; bit < 64 && (ah !== 0 || al !== 0); bit++) {
    const m = 0x80000000 >>> (bit & 31);
    if (bit < 32 ? ah & m : al & m) {
      ph ^= bh;
      pl ^= bl;
      if (bit < 32) ah &= ~m;
      else al &= ~m;
    }
    const carry = bl & 1;
    bl = (bl >>> 1) | (bh << 31);
    bh >>>= 1;
    if (carry) {
      bh ^= CRC64_POLY.hi;
      bl ^= CRC64_POLY.lo;
    }
  }
  return { hi: ph >>> 0, lo: pl >>> 0 };
}

/** x^(2^k) mod P for k = 0…63, built on first use. */
const powers32 = new Map<number, Uint32Array>();
let powers64: U64[] | undefined;

function table32(poly: number): Uint32Array {
  let t = powers32.get(poly);
  if (t === undefined) {
    t = new Uint32Array(POWERS);
    t[0] = 0x40000000; // x^1
    for (let k = 1; k < POWERS; k++) t[k] = mul32(t[k - 1] as number, t[k - 1] as number, poly);
    powers32.set(poly, t);
  }
  return t;
}

function table64(): U64[] {
  if (powers64 === undefined) {
    let x: U64 = { hi: 0x40000000, lo: 0 }; // x^1
    powers64 = [x];
    for (let k = 1; k < POWERS; k++) {
      x = mul64(x, x);
      powers64.push(x);
    }
  }
  return powers64;
}

/** The bit positions set in `bytes`·8, lowest first, without 32-bit overflow. */
function bitsOfBitLength(bytes: number): number[] {
  const bits: number[] = [];
  let n = bytes;
  for (let k = 3; n > 0; k++, n = Math.floor(n / 2)) if (n % 2 === 1) bits.push(k);
  return bits;
}

function checkLength(lengthB: number): void {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0) {
    throw new RangeError(`combineCrc: lengthB must be a whole number >= 0, got ${lengthB}`);
  }
}

function checkDigest(algorithm: CrcAlgorithm, name: string, digest: Uint8Array): void {
  if (digest.length !== DIGEST_BYTES[algorithm]) {
    throw new RangeError(
      `combineCrc: ${name} must be a ${DIGEST_BYTES[algorithm]}-byte ${algorithm} digest, got ${digest.length} bytes`,
    );
  }
}

/**
 * The CRC of A‖B from crcA = CRC(A), crcB = CRC(B) and lengthB = |B| in bytes (any whole
 * number up to 2^53 - 1; 0 is allowed). Digests are raw big-endian bytes, as createChecksum
 * returns them. Throws RangeError on wrong digest sizes or lengths (a caller's mistake).
 */
export function combineCrc(
  algorithm: CrcAlgorithm,
  crcA: Uint8Array,
  crcB: Uint8Array,
  lengthB: number,
): Buffer {
  if (!isCrcAlgorithm(algorithm)) throw new RangeError(`combineCrc: ${algorithm} is not a CRC`);
  checkDigest(algorithm, "crcA", crcA);
  checkDigest(algorithm, "crcB", crcB);
  checkLength(lengthB);
  const a = Buffer.from(crcA.buffer, crcA.byteOffset, crcA.length);
  const b = Buffer.from(crcB.buffer, crcB.byteOffset, crcB.length);
  const out = Buffer.allocUnsafe(a.length);
  if (algorithm === "CRC64NVME") {
    const table = table64();
    let op: U64 = { hi: 0x80000000, lo: 0 }; // x^0
    for (const k of bitsOfBitLength(lengthB)) op = mul64(table[k] as U64, op);
    const shifted = mul64(op, { hi: a.readUInt32BE(0), lo: a.readUInt32BE(4) });
    out.writeUInt32BE((shifted.hi ^ b.readUInt32BE(0)) >>> 0, 0);
    out.writeUInt32BE((shifted.lo ^ b.readUInt32BE(4)) >>> 0, 4);
    return out;
  }
  const poly = algorithm === "CRC32" ? CRC32_POLY : CRC32C_POLY;
  const table = table32(poly);
  let op = 0x80000000; // x^0
  for (const k of bitsOfBitLength(lengthB)) op = mul32(table[k] as number, op, poly);
  out.writeUInt32BE((mul32(op, a.readUInt32BE(0), poly) ^ b.readUInt32BE(0)) >>> 0, 0);
  return out;
}

/** x^(8·n) mod P for CRC-32 by length n, for lengths met again (a tar's files of one size). */
const shiftOperators = new Map<number, number>();
const SHIFT_OPERATORS_KEPT = 4096;

/**
 * combineCrc for CRC-32 (zlib's) as numbers, without allocating: crc(A‖B) from crcA = crc(A),
 * crcB = crc(B) and lengthB = |B|. Hot: the tar extraction folds every file's CRC into the
 * CRC of the whole decompressed stream with it (archive/gunzip.ts), ~1 µs a file.
 */
export function combineCrc32(crcA: number, crcB: number, lengthB: number): number {
  // x^0: crc(A‖B) = crcA ⊕ crcB, crcB being 0 (the CRC of nothing).
  if (lengthB === 0) return (crcA ^ crcB) >>> 0;
  let op = shiftOperators.get(lengthB);
  if (op === undefined) {
    checkLength(lengthB);
    const table = table32(CRC32_POLY);
    op = 0x80000000; // x^0
    for (const k of bitsOfBitLength(lengthB)) op = mul32(table[k] as number, op, CRC32_POLY);
    if (shiftOperators.size >= SHIFT_OPERATORS_KEPT) shiftOperators.clear();
    shiftOperators.set(lengthB, op);
  }
  return (mul32(op, crcA >>> 0, CRC32_POLY) ^ crcB) >>> 0;
}
