/**
 * The MD5 of every part of a multipart object, eight parts at a time in the lanes of the
 * SIMD kernel (md5-lanes-kernel.ts): ~3x the throughput of hashing the parts one after the
 * other on one core. Parts are opened in order as the bytes below `available` allow (or as
 * `startable` names them); each call takes the eight open parts with the most bytes ready,
 * their MD5 states moved into the lanes and back, and each lane reads its part's bytes where
 * they are (`locate`) or through `read` into the kernel's memory, so nothing is copied twice.
 */
import { md5LanesModule, STATE_OFFSET } from "./md5-lanes-kernel.ts";
import type { ByteSpan } from "./ordered-hasher.ts";

const GROUPS = 2;
export const LANES = 4 * GROUPS;
/** Bytes per lane per kernel call (8 lanes: 2 MiB a call). */
const CHUNK = 256 * 1024;
/** Room after each lane's chunk for the padding blocks. */
const TAIL = 128;
const LANE_STRIDE = CHUNK + TAIL;
const INPUT_OFFSET = STATE_OFFSET + 64 * GROUPS;
const PAGES = Math.ceil((INPUT_OFFSET + LANES * LANE_STRIDE) / 65536);

const INITIAL_STATE = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476] as const;

type Kernel = (...pointersThenBlocks: number[]) => void;

/**
 * Bytes at the start of a shared memory the lanes use for themselves (state, padding, bytes
 * copied when a lane's next bytes are not contiguous in memory): see Md5Lanes' `shared`.
 */
export const LANES_RESERVED_BYTES = PAGES * 65536;

/** A shared WebAssembly.Memory (TypeScript declares the type only with the DOM). */
export interface SharedMemory {
  readonly buffer: SharedArrayBuffer;
}

/** The part of the WebAssembly global used here (TypeScript declares it only with the DOM). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (
    module: object,
    imports?: Record<string, Record<string, unknown>>,
  ) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;

let compiled: object | null | undefined;
let compiledShared: object | null | undefined;

/** The kernel for a shared memory imported as env.memory, or undefined. */
function sharedKernelModule(): object | undefined {
  if (compiledShared === undefined) {
    try {
      if (wasm === undefined) throw new Error("no WebAssembly");
      compiledShared = new wasm.Module(md5LanesModule(GROUPS, PAGES, true));
    } catch {
      compiledShared = null;
    }
  }
  return compiledShared ?? undefined;
}

/**
 * Lanes pay from four parts on: fewer leave lanes idle (each lane alone runs at ~1/8 of the
 * total), where OpenSSL's MD5 hashes one part at a time at full speed.
 */
export const MIN_PARTS_FOR_LANES = 4;

export function useMd5Lanes(algorithm: string, parts: number): boolean {
  return algorithm === "MD5" && parts >= MIN_PARTS_FOR_LANES && kernelModule() !== undefined;
}

/** The compiled kernel; undefined where WebAssembly SIMD is missing (V8 needs SSE4.1). */
function kernelModule(): object | undefined {
  if (compiled === undefined) {
    try {
      if (wasm === undefined) throw new Error("no WebAssembly");
      compiled = new wasm.Module(md5LanesModule(GROUPS, PAGES));
    } catch {
      compiled = null;
    }
  }
  return compiled ?? undefined;
}

interface KernelInstance {
  readonly kernel: Kernel;
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

function newInstance(shared: SharedMemory | undefined): KernelInstance {
  const module = shared === undefined ? kernelModule() : sharedKernelModule();
  if (module === undefined || wasm === undefined)
    throw new Error("WebAssembly SIMD is not available");
  const { memory, md5lanes } = new wasm.Instance(
    module,
    shared === undefined ? undefined : { env: { memory: shared } },
  ).exports as {
    memory: { buffer: ArrayBuffer | SharedArrayBuffer };
    md5lanes: Kernel;
  };
  return { kernel: md5lanes, buffer: memory.buffer };
}

/** md5Many's instance: one per thread, used by one call at a time (calls are synchronous). */
let manyInstance: KernelInstance | undefined;

/**
 * The MD5 of each of `inputs`, up to eight at a time in the lanes: for the small objects of a
 * folder, hashed one by one with OpenSSL on the main thread (20,000 objects of 16 KiB: ~0.5 s
 * of its CPU). Synchronous, and the instance is reused: a new one per call would make (and
 * zero) 2 MiB of memory each time. Fewer than MIN_PARTS_FOR_LANES inputs, or no SIMD: the
 * caller should use OpenSSL (useMd5Lanes says which).
 */
export function md5Many(inputs: readonly Uint8Array[]): Buffer[] {
  manyInstance ??= newInstance(undefined);
  const spans: ByteSpan[] = [];
  let end = 0;
  for (const input of inputs) {
    spans.push({ start: end, end: end + input.length });
    end += input.length;
  }
  let current = 0;
  const lanes = new Md5Lanes(
    spans,
    (target, position) => {
      // Each read is within one span (a lane reads its own input's bytes).
      let span = spans[current] as ByteSpan;
      if (position < span.start || position >= span.end) {
        current = spans.findIndex((candidate) => position < candidate.end);
        span = spans[current] as ByteSpan;
      }
      const input = inputs[current] as Uint8Array;
      const from = position - span.start;
      target.set(input.subarray(from, from + target.length));
    },
    undefined,
    undefined,
    manyInstance,
  );
  lanes.advance(end, true);
  return lanes.results();
}

/** A part being hashed: where it is, and its MD5 state between kernel calls. */
interface Open {
  /** Index into the spans. */
  readonly span: number;
  readonly start: number;
  readonly end: number;
  /** Next byte to hash. */
  position: number;
  /** A, B, C, D after the bytes before `position`. */
  state: [number, number, number, number];
  /** Bytes ready to hash (set while choosing the parts of a call). */
  ready: number;
}

/**
 * Parts open at once when they are taken in order (a file written in order, md5Many): enough
 * to choose eight that have bytes; parts that come each in their own stream (`startable`) are
 * opened as their bytes come, as many as there are streams.
 */
const OPEN_IN_ORDER = 2 * LANES;

export class Md5Lanes {
  private readonly spans: readonly ByteSpan[];
  private readonly read: (target: Uint8Array, position: number) => void;
  private readonly locate: ((position: number, length: number) => number | undefined) | undefined;
  private readonly kernel: Kernel;
  private readonly memory: Uint8Array;
  private readonly state: Uint32Array;
  /** The parts being hashed, in the order they were opened. */
  private open: Open[] = [];
  private readonly digests: (Buffer | undefined)[];
  /** Spans opened (or finished). */
  private readonly started: Uint8Array;
  /** No span before this one is waiting to be opened. */
  private nextSpan = 0;
  private finishedSpans = 0;
  private readonly startable: (() => Iterable<number>) | undefined;

  /**
   * @param read fills `target` with the bytes at `position` (exactly its length, or throws).
   * @param shared a shared memory the kernel works in (its first LANES_RESERVED_BYTES are the
   *   lanes'), and where the bytes of `length` at `position` are in it, contiguous, if they
   *   are: the lanes read those in place instead of through `read` (no copy).
   * @param startable the spans that have bytes to hash, in the order to start them; without
   *   it, spans start in order. For parts that arrive through several streams, each stream
   *   fetching a run of consecutive parts: in order, a part would wait for the second part of
   *   a run while the other streams' parts have bytes.
   */
  constructor(
    spans: readonly ByteSpan[],
    read: (target: Uint8Array, position: number) => void,
    shared?: {
      memory: SharedMemory;
      locate(position: number, length: number): number | undefined;
    },
    startable?: () => Iterable<number>,
    /** A kernel instance to work in (md5Many's, reused): else one of its own. */
    instance?: KernelInstance,
  ) {
    this.spans = spans;
    this.startable = startable;
    this.started = new Uint8Array(spans.length);
    this.read = read;
    this.locate = shared?.locate;
    const { kernel, buffer } = instance ?? newInstance(shared?.memory);
    this.kernel = kernel;
    this.memory = new Uint8Array(buffer);
    this.state = new Uint32Array(buffer, STATE_OFFSET, 16 * GROUPS);
    this.digests = new Array(spans.length).fill(undefined);
  }

  /** Every span is hashed. */
  get done(): boolean {
    return this.finishedSpans === this.spans.length;
  }

  /** The digest of each span, in order, once done. */
  results(): Buffer[] {
    return this.digests.map((digest, index) => {
      if (digest === undefined) throw new Error(`part ${index + 1} was not hashed`);
      return digest;
    });
  }

  /**
   * Hashes what the bytes before `available` allow: one position for every span (a file
   * written in order), or each span's own (parts arriving each in its own stream). A kernel
   * call costs the same with one lane busy as with eight, so until `final` (no byte will come
   * after `available`) it waits for eight parts with a chunk ready each (or every part left):
   * hashing each part's newest bytes as they come would run one lane at a time (2 GiB in
   * 4 MiB steps: 7.1 s against 1.2 s). More parts may be open than there are lanes: each call
   * takes the eight with the most bytes ready, their states moved in and out of the lanes, so
   * one slow stream does not hold the lanes back. 2 GiB from 8 streams (2-core AMD EPYC,
   * tmpfs): lanes bound to parts did 74-78% of the work they could, the rest was idle lanes
   * in calls that could not wait; with this (and slot-hash-worker.ts reading every message
   * before hashing) 82-93%, the hashing thread's CPU 1.43-1.50 s -> 1.25-1.30 s.
   * While `force` says so (memory the caller holds must be freed), it hashes what is there
   * without waiting, one call at a time: draining every part at once would run most calls
   * with one or two lanes busy (2 GiB: 4.3 s of CPU against 1.0 s).
   */
  advance(
    available: number | ((span: number) => number),
    final = false,
    force: () => boolean = () => false,
  ): void {
    const limit = typeof available === "number" ? () => available : available;
    for (;;) {
      this.openParts(limit, final);
      if (this.finishReady(limit)) continue;
      const whole: Open[] = [];
      const some: Open[] = [];
      for (const part of this.open) {
        const available = limit(part.span);
        part.ready = Math.min(available, part.end) - part.position;
        if (part.ready < 64) continue;
        // All of a part's rest is as good as a whole chunk: nothing more will come for it.
        if (part.ready >= CHUNK || part.end <= available) whole.push(part);
        else some.push(part);
      }
      if (whole.length === 0 && some.length === 0) return;
      const left = this.spans.length - this.finishedSpans;
      if (final) this.run([...whole, ...some]);
      else if (whole.length >= Math.min(LANES, left)) this.run(whole);
      else if (force()) {
        // The parts with a whole chunk run (the others sit out), then `force` is asked again.
        this.run(whole.length > 0 ? whole : some);
      } else return;
    }
  }

  /** How far span `index` is hashed (its start before it is opened, its end once done). */
  hashedTo(index: number): number {
    const span = this.spans[index];
    if (span === undefined) throw new RangeError(`no span ${index}`);
    if (this.digests[index] !== undefined) return span.end;
    const part = this.open.find((candidate) => candidate.span === index);
    return part?.position ?? span.start;
  }

  /**
   * Opens the next spans: those `startable` names (until `final`: then any left, in order),
   * else the next in order as long as its first bytes are there.
   */
  private openParts(limit: (span: number) => number, final: boolean): void {
    if (this.startable !== undefined && !final) {
      for (const candidate of this.startable()) {
        if (this.started[candidate] === 0) this.openSpan(candidate);
      }
      return;
    }
    while (this.open.length < OPEN_IN_ORDER) {
      const next = this.nextInOrder(limit);
      if (next === undefined) return;
      this.openSpan(next);
    }
  }

  private openSpan(index: number): void {
    const span = this.spans[index] as ByteSpan;
    this.started[index] = 1;
    this.open.push({
      span: index,
      start: span.start,
      end: span.end,
      position: span.start,
      state: [...INITIAL_STATE],
      ready: 0,
    });
  }

  private nextInOrder(limit: (span: number) => number): number | undefined {
    while (this.nextSpan < this.spans.length && this.started[this.nextSpan] === 1)
      this.nextSpan += 1;
    const span = this.spans[this.nextSpan];
    if (span === undefined || span.start > limit(this.nextSpan)) return undefined;
    return this.nextSpan;
  }

  /**
   * One kernel call for the (up to) eight of `candidates` with the most bytes ready, as many
   * blocks as the least ready of them has (at most a chunk).
   */
  private run(candidates: Open[]): void {
    const chosen =
      candidates.length <= LANES
        ? candidates
        : candidates.sort((x, y) => y.ready - x.ready).slice(0, LANES);
    let blocks = CHUNK / 64;
    for (const part of chosen) blocks = Math.min(blocks, Math.floor(part.ready / 64));
    const bytes = blocks * 64;
    const pointers: number[] = [];
    for (let index = 0; index < LANES; index++) {
      const part = chosen[index];
      if (part === undefined) {
        // An idle lane hashes whatever is in its area; its state is not kept.
        pointers.push(INPUT_OFFSET + index * LANE_STRIDE);
        continue;
      }
      this.setState(index, part.state);
      // In place where the bytes are in the kernel's memory, else copied into the lane's area.
      const at = this.locate?.(part.position, bytes);
      pointers.push(at ?? INPUT_OFFSET + index * LANE_STRIDE);
      if (at === undefined) this.read(this.input(index, bytes), part.position);
    }
    this.kernel(...pointers, blocks);
    chosen.forEach((part, index) => {
      part.state = this.getState(index);
      part.position += bytes;
    });
  }

  /**
   * Finishes the parts with fewer than 64 bytes left, all of them available: their last bytes,
   * the padding and the length (RFC 1321 §3.1-3.2), up to eight in one kernel call. Says
   * whether any was finished.
   */
  private finishReady(limit: (span: number) => number): boolean {
    const ending = this.open.filter(
      (part) => part.end - part.position < 64 && part.end <= limit(part.span),
    );
    if (ending.length === 0) return false;
    // Parts of one or of two padding blocks go in separate calls (a call runs every lane the
    // same number of blocks).
    for (const blocks of [1, 2]) {
      const group = ending.filter((part) => (part.end - part.position < 56 ? 1 : 2) === blocks);
      for (let first = 0; first < group.length; first += LANES) {
        this.finishGroup(group.slice(first, first + LANES), blocks);
      }
    }
    this.open = this.open.filter((part) => this.digests[part.span] === undefined);
    return true;
  }

  private finishGroup(parts: readonly Open[], blocks: number): void {
    parts.forEach((part, index) => {
      const rest = part.end - part.position;
      const input = this.input(index, blocks * 64);
      input.fill(0);
      if (rest > 0) this.read(input.subarray(0, rest), part.position);
      input[rest] = 0x80;
      const length = part.end - part.start;
      const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
      // The length in bits, 64-bit little-endian; lengths are below 2^53 bytes.
      view.setUint32(blocks * 64 - 8, (length % 2 ** 29) * 8, true);
      view.setUint32(blocks * 64 - 4, Math.floor(length / 2 ** 29), true);
      this.setState(index, part.state);
    });
    this.kernel(
      ...Array.from({ length: LANES }, (_, index) => INPUT_OFFSET + index * LANE_STRIDE),
      blocks,
    );
    parts.forEach((part, index) => {
      const digest = Buffer.allocUnsafe(16);
      this.getState(index).forEach((word, i) => {
        digest.writeUInt32LE(word, 4 * i);
      });
      this.digests[part.span] = digest;
      part.position = part.end;
      this.finishedSpans += 1;
    });
  }

  /** Lane `index`'s input area, its first `bytes`. */
  private input(index: number, bytes: number): Uint8Array {
    const start = INPUT_OFFSET + index * LANE_STRIDE;
    return this.memory.subarray(start, start + bytes);
  }

  /** A, B, C, D of a lane: word r of lane l of group g is at 16g + 4r + l. */
  private getState(index: number): [number, number, number, number] {
    const base = 16 * (index >> 2) + (index & 3);
    const s = this.state;
    return [s[base] ?? 0, s[base + 4] ?? 0, s[base + 8] ?? 0, s[base + 12] ?? 0];
  }

  private setState(index: number, words: readonly number[]): void {
    const base = 16 * (index >> 2) + (index & 3);
    words.forEach((word, r) => {
      this.state[base + 4 * r] = word;
    });
  }
}
