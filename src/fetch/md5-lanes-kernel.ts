/**
 * MD5 of eight independent byte streams at once, in WebAssembly SIMD: two groups of four
 * i32x4 lanes, one lane per stream, the two groups' steps interleaved so that one group's
 * dependency chain fills the other's wait. MD5 is a serial chain within one stream: one core
 * hashes one stream at 0.71-0.79 GB/s here (OpenSSL). The parts of a multipart object are
 * independent streams; eight of them in lanes run at 2.46-2.52 GB/s in total on one core
 * (4 lanes 1.52-1.63, 12 lanes 2.9, 16 lanes 3.0; 1 MiB per lane, measured on this
 * project's 2-core Xeon, Node 24, before the step was reordered). On an AMD EPYC (run i)
 * the same kernel ran at 1.55 GB/s; with each step's adds ordered off the chain (below) and
 * K read from memory, 2.1-2.2 GB/s (12 lanes 2.9). See md5-lanes.ts for how lanes are fed.
 *
 * The module is emitted here as bytes (~10 KiB), not checked in as an opaque binary: every
 * instruction is in this file (RFC 1321 §3.4; the same operations as the reference code,
 * each step's additions in another order).
 *
 * Memory (the module's own, or a shared one it imports as env.memory; exported as "memory"
 * either way): [K_OFFSET, +1 KiB) holds the 64 constants, [STATE_OFFSET, +64 x groups) each
 * group's state as four vectors A, B, C, D (lane l of group g's A is stream 4g + l's A);
 * the rest is the caller's. Export `md5lanes(p0, …, p[4 x groups - 1], blocks)` runs
 * `blocks` 64-byte blocks of stream i read from address pi, updating every lane's state.
 */

export const K_OFFSET = 0;
const K_TABLE_BYTES = 64 * 16;
export const STATE_OFFSET = K_OFFSET + K_TABLE_BYTES;

/** Per-round shift amounts (RFC 1321 §3.4). */
const SHIFTS = [
  [7, 12, 17, 22],
  [5, 9, 14, 20],
  [4, 11, 16, 23],
  [6, 10, 15, 21],
] as const;

/** K[i] = floor(abs(sin(i + 1)) * 2^32), written out as in RFC 1321 §3.4. */
// biome-ignore format: four constants per line, as in the RFC
const K = [
  0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
  0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
  0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
  0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
  0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
  0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
  0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
  0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
  0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
  0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
  0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
  0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
  0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
  0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
  0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
  0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/** The message word step i reads. */
function wordIndex(i: number): number {
  if (i < 16) return i;
  if (i < 32) return (5 * i + 1) % 16;
  if (i < 48) return (3 * i + 5) % 16;
  return (7 * i) % 16;
}

// Opcodes (WebAssembly core and SIMD specifications).
const op = {
  block: 0x02,
  loop: 0x03,
  br: 0x0c,
  brIf: 0x0d,
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  void: 0x40,
  i32: 0x7f,
  v128: 0x7b,
} as const;
const simd = {
  load: 0x00,
  store: 0x0b,
  const: 0x0c,
  shuffle: 0x0d,
  not: 0x4d,
  and: 0x4e,
  andnot: 0x4f,
  or: 0x50,
  xor: 0x51,
  bitselect: 0x52,
  i32x4Shl: 0xab,
  i32x4ShrU: 0xad,
  i32x4Add: 0xae,
} as const;

function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function vector(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

type Quad = [number, number, number, number];

/** The local variables of one group of four lanes. */
interface Group {
  /** Its pointer parameters. */
  readonly pointers: Quad;
  /** Where its state lives in memory. */
  readonly stateAddress: number;
  /** A, B, C, D of the four lanes. */
  readonly state: Quad;
  /** The state before the block; doubles as scratch while words are transposed. */
  readonly saved: Quad;
  /** words[w]: message word w of the block, of every lane. */
  readonly words: number[];
  /** Scratch. */
  readonly scratch: Quad;
}

/** The body of md5lanes: `groups` x 4 lanes, the groups' steps interleaved. */
function kernelBody(groups: number): number[] {
  // Parameters: 4 pointers per group, then the block count; locals after them (all v128).
  const blocks = 4 * groups;
  let next = blocks + 1;
  const quad = (): Quad => [next++, next++, next++, next++];
  const all: Group[] = Array.from({ length: groups }, (_, g) => ({
    pointers: [4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3],
    stateAddress: STATE_OFFSET + 64 * g,
    state: quad(),
    saved: quad(),
    words: Array.from({ length: 16 }, () => next++),
    scratch: quad(),
  }));
  const v128Locals = next - (blocks + 1);

  const code: number[] = [];
  const emit = (...bytes: number[]): void => {
    code.push(...bytes);
  };
  const get = (index: number): void => emit(op.localGet, ...uleb(index));
  const set = (index: number): void => emit(op.localSet, ...uleb(index));
  const simdOp = (opcode: number): void => emit(0xfd, ...uleb(opcode));
  const i32Const = (value: number): void => emit(op.i32Const, ...sleb(value));
  const memarg = (offset: number): number[] => [4, ...uleb(offset)]; // aligned to 16
  /** i8x16.shuffle of x and y picking 32-bit words (0-3 from x, 4-7 from y). */
  const shuffleWords = (x: number, y: number, w: Quad): void => {
    get(x);
    get(y);
    simdOp(simd.shuffle);
    emit(...w.flatMap((i) => [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]));
  };
  const forQuad = (f: (index: 0 | 1 | 2 | 3) => void): void => {
    for (const index of [0, 1, 2, 3] as const) f(index);
  };

  for (const group of all) {
    group.state.forEach((local, r) => {
      i32Const(0);
      simdOp(simd.load);
      emit(...memarg(group.stateAddress + 16 * r));
      set(local);
    });
  }

  emit(op.block, op.void);
  emit(op.loop, op.void);
  get(blocks);
  emit(op.i32Eqz);
  emit(op.brIf, 1); // no block left: out of the loop

  for (const { pointers, state, saved, words, scratch } of all) {
    // Rows r0..r3 (16 bytes of each lane) become columns: a 4x4 transpose in 8 shuffles.
    const [r0, r1, r2, r3] = scratch;
    const [u0, u1, u2, u3] = saved;
    forQuad((q) => {
      forQuad((lane) => {
        get(pointers[lane]);
        simdOp(simd.load);
        emit(...memarg(16 * q));
        set(scratch[lane]);
      });
      shuffleWords(r0, r1, [0, 4, 1, 5]);
      set(u0);
      shuffleWords(r2, r3, [0, 4, 1, 5]);
      set(u1);
      shuffleWords(r0, r1, [2, 6, 3, 7]);
      set(u2);
      shuffleWords(r2, r3, [2, 6, 3, 7]);
      set(u3);
      [
        [u0, u1, [0, 1, 4, 5]],
        [u0, u1, [2, 3, 6, 7]],
        [u2, u3, [0, 1, 4, 5]],
        [u2, u3, [2, 3, 6, 7]],
      ].forEach(([x, y, w], column) => {
        shuffleWords(x as number, y as number, w as Quad);
        set(words[4 * q + column] as number);
      });
    });
    forQuad((r) => {
      get(state[r]);
      set(saved[r]);
    });
  }

  // 64 steps; the registers rotate by renaming: (a, b, c, d) <- (d, a', b, c).
  const registers = all.map((group): Quad => [...group.state]);
  for (let i = 0; i < 64; i++) {
    const round = i >> 4;
    const shift = SHIFTS[round]?.[i & 3] as number;
    all.forEach((group, g) => {
      const [a, b, c, d] = registers[g] as Quad;
      // a' = b + ((a + word + K[i] + f) <<< shift), added in that order: a, the word and K
      // are known steps before b is, so only f, one add, the rotation and "+ b" wait for the
      // previous step. Adding f first (as RFC 1321 writes it) put three adds on that chain:
      // 8 lanes 1.55 -> 2.1 GB/s on this project's AMD EPYC (TurboFan keeps the order).
      get(a);
      get(group.words[wordIndex(i)] as number);
      simdOp(simd.i32x4Add);
      // K[i] from the table in memory: a constant vector costs three instructions to build.
      i32Const(0);
      simdOp(simd.load);
      emit(...memarg(K_OFFSET + 16 * i));
      simdOp(simd.i32x4Add);
      if (round === 0) {
        // F = (b & c) | (~b & d)
        get(c);
        get(d);
        get(b);
        simdOp(simd.bitselect);
        simdOp(simd.i32x4Add);
      } else if (round === 1) {
        // G = (b & d) | (c & ~d) = (c & ~d) + (b & d): the two have no bit in common, and
        // c & ~d does not wait for b.
        get(c);
        get(d);
        simdOp(simd.andnot);
        simdOp(simd.i32x4Add);
        get(b);
        get(d);
        simdOp(simd.and);
        simdOp(simd.i32x4Add);
      } else if (round === 2) {
        // H = (c ^ d) ^ b: c ^ d does not wait for b.
        get(c);
        get(d);
        simdOp(simd.xor);
        get(b);
        simdOp(simd.xor);
        simdOp(simd.i32x4Add);
      } else {
        // I = c ^ (b | ~d)
        get(d);
        simdOp(simd.not);
        get(b);
        simdOp(simd.or);
        get(c);
        simdOp(simd.xor);
        simdOp(simd.i32x4Add);
      }
      emit(op.localTee, ...uleb(group.scratch[0]));
      i32Const(shift);
      simdOp(simd.i32x4Shl);
      get(group.scratch[0]);
      i32Const(32 - shift);
      simdOp(simd.i32x4ShrU);
      simdOp(simd.or);
      get(b);
      simdOp(simd.i32x4Add);
      set(a);
      registers[g] = [d, a, b, c];
    });
  }
  // 64 renamings bring every register back to its local; add the state from before.
  for (const { state, saved } of all) {
    forQuad((r) => {
      get(state[r]);
      get(saved[r]);
      simdOp(simd.i32x4Add);
      set(state[r]);
    });
  }

  for (const { pointers } of all) {
    for (const pointer of pointers) {
      get(pointer);
      i32Const(64);
      emit(op.i32Add);
      set(pointer);
    }
  }
  get(blocks);
  i32Const(1);
  emit(op.i32Sub);
  set(blocks);
  emit(op.br, 0);
  emit(op.end); // loop
  emit(op.end); // block

  for (const group of all) {
    group.state.forEach((local, r) => {
      i32Const(0);
      get(local);
      simdOp(simd.store);
      emit(...memarg(group.stateAddress + 16 * r));
    });
  }
  emit(op.end);

  const locals = vector([[...uleb(v128Locals), op.v128]]);
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/**
 * The module's bytes: `groups` x 4 lanes, `pages` of 64 KiB of memory of its own, or with
 * `sharedImport` a shared memory imported as env.memory (at least `pages`, at most 4 GiB),
 * whose bytes the lanes can then read where they are (slot-hash-worker.ts).
 */
export function md5LanesModule(
  groups: number,
  pages: number,
  sharedImport = false,
): Uint8Array<ArrayBuffer> {
  const name = (text: string): number[] => {
    const bytes = [...Buffer.from(text, "utf8")];
    return [...uleb(bytes.length), ...bytes];
  };
  const type = section(
    1,
    vector([[0x60, ...vector(Array.from({ length: 4 * groups + 1 }, () => [op.i32])), 0]]),
  );
  // Limits flag 0x03: shared, with a maximum (a shared memory must declare one).
  const imports = sharedImport
    ? section(
        2,
        vector([[...name("env"), ...name("memory"), 0x02, 0x03, ...uleb(pages), ...uleb(65536)]]),
      )
    : [];
  const functions = section(3, vector([[0]]));
  const memory = sharedImport ? [] : section(5, vector([[0x00, ...uleb(pages)]]));
  const exports = section(
    7,
    vector([
      [...name("memory"), 0x02, 0],
      [...name("md5lanes"), 0x00, 0],
    ]),
  );
  const code = section(10, vector([kernelBody(groups)]));
  // One active segment at K_OFFSET of memory 0, written whenever the module is instantiated.
  const table = K.flatMap((k) => {
    const word = [k & 0xff, (k >>> 8) & 0xff, (k >>> 16) & 0xff, k >>> 24];
    return [...word, ...word, ...word, ...word];
  });
  const data = section(
    11,
    vector([[0x00, op.i32Const, ...sleb(K_OFFSET), op.end, ...uleb(table.length), ...table]]),
  );
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...type,
    ...imports,
    ...functions,
    ...memory,
    ...exports,
    ...code,
    ...data,
  ]);
}
