/**
 * The MD5 of every part of a multipart object, eight parts at a time in the lanes of the
 * SIMD kernel (md5-lanes-kernel.ts): ~3x the throughput of hashing the parts one after the
 * other on one core. Parts are taken in order as the bytes below `available` allow; each
 * lane reads its part's bytes straight into the kernel's memory (`read`, from the file
 * being written), so nothing is copied twice. Lanes without bytes ready sit out a call
 * (their state is put back after it).
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

interface Lane {
  /** Index into the spans. */
  readonly span: number;
  readonly start: number;
  readonly end: number;
  /** Next byte to hash. */
  position: number;
}

export class Md5Lanes {
  private readonly spans: readonly ByteSpan[];
  private readonly read: (target: Uint8Array, position: number) => void;
  private readonly locate: ((position: number, length: number) => number | undefined) | undefined;
  private readonly kernel: Kernel;
  private readonly memory: Uint8Array;
  private readonly state: Uint32Array;
  private readonly lanes: (Lane | undefined)[] = new Array(LANES).fill(undefined);
  private readonly digests: (Buffer | undefined)[];
  /** Spans given a lane (or finished). */
  private readonly started: Uint8Array;
  private startedSpans = 0;
  /** No span before this one is waiting for a lane. */
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
   *   fetching a run of consecutive parts: in order, a lane would wait for the second part of
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
   * written in order), or each span's own (parts arriving each in its own stream). Until
   * `final` (no byte will come after `available`), it waits for work for every lane: a call
   * costs the same with one lane busy as with eight, and hashing each part's newest bytes as
   * they come would run one lane at a time (2 GiB in 4 MiB steps: 7.1 s against 1.2 s).
   * While `force` says so (memory the caller holds must be freed), it hashes what is there
   * without waiting, one call at a time: draining every lane at once would run most calls
   * with one or two lanes busy (2 GiB: 4.3 s of CPU against 1.0 s).
   */
  advance(
    available: number | ((span: number) => number),
    final = false,
    force: () => boolean = () => false,
  ): void {
    const limit = typeof available === "number" ? () => available : available;
    for (;;) {
      this.fillLanes(limit, final);
      let blocks = Number.POSITIVE_INFINITY;
      let finished = false;
      let assigned = 0;
      let allReady = true;
      let anyChunk = false;
      for (let index = 0; index < LANES; index++) {
        const lane = this.lanes[index];
        if (lane === undefined) continue;
        assigned += 1;
        const end = limit(lane.span);
        if (lane.end - lane.position < 64 && lane.end <= end) {
          this.finish(index, lane);
          finished = true;
          continue;
        }
        const ready = Math.min(end, lane.end) - lane.position;
        if (ready >= 64) blocks = Math.min(blocks, Math.floor(ready / 64));
        if (ready >= CHUNK) anyChunk = true;
        if (ready < CHUNK && lane.end > end) allReady = false;
      }
      if (finished) continue;
      if (blocks === Number.POSITIVE_INFINITY) return;
      const lanesFull = assigned === LANES || this.startedSpans === this.spans.length;
      if (final || (lanesFull && allReady)) {
        this.run(Math.min(blocks, CHUNK / 64), limit);
      } else if (force()) {
        // The lanes with a whole chunk run (the others sit out), then `force` is asked again.
        this.run(anyChunk ? CHUNK / 64 : Math.min(blocks, CHUNK / 64), limit);
      } else return;
    }
  }

  /** How far span `index` is hashed (its start before it has a lane, its end once done). */
  hashedTo(index: number): number {
    const span = this.spans[index];
    if (span === undefined) throw new RangeError(`no span ${index}`);
    if (this.digests[index] !== undefined) return span.end;
    const lane = this.lanes.find((candidate) => candidate?.span === index);
    return lane?.position ?? span.start;
  }

  /**
   * Gives free lanes the next spans: those `startable` names (until `final`: then any left,
   * in order), else the next in order as long as its first bytes are there.
   */
  private fillLanes(limit: (span: number) => number, final: boolean): void {
    for (let index = 0; index < LANES; index++) {
      if (this.lanes[index] !== undefined) continue;
      const next =
        this.startable !== undefined && !final ? this.nextStartable() : this.nextInOrder(limit);
      if (next === undefined) return;
      const span = this.spans[next] as ByteSpan;
      this.started[next] = 1;
      this.startedSpans += 1;
      this.lanes[index] = { span: next, start: span.start, end: span.end, position: span.start };
      this.setState(index, INITIAL_STATE);
    }
  }

  private nextStartable(): number | undefined {
    for (const candidate of this.startable?.() ?? []) {
      if (this.started[candidate] === 0) return candidate;
    }
    return undefined;
  }

  private nextInOrder(limit: (span: number) => number): number | undefined {
    while (this.nextSpan < this.spans.length && this.started[this.nextSpan] === 1)
      this.nextSpan += 1;
    const span = this.spans[this.nextSpan];
    if (span === undefined || span.start > limit(this.nextSpan)) return undefined;
    return this.nextSpan;
  }

  /** Runs `blocks` blocks of every lane that has them; the others keep their state. */
  private run(blocks: number, limit: (span: number) => number): void {
    const bytes = blocks * 64;
    const active: boolean[] = [];
    const pointers: number[] = [];
    for (let index = 0; index < LANES; index++) {
      const lane = this.lanes[index];
      const ready = lane === undefined ? 0 : Math.min(limit(lane.span), lane.end) - lane.position;
      const runs = lane !== undefined && ready >= bytes;
      active.push(runs);
      // In place where the bytes are in the kernel's memory, else copied into the lane's area.
      const at = runs ? this.locate?.(lane.position, bytes) : undefined;
      pointers.push(at ?? INPUT_OFFSET + index * LANE_STRIDE);
      if (runs && at === undefined) this.read(this.input(index, bytes), lane.position);
    }
    this.runKernel(blocks, active, pointers);
    for (let index = 0; index < LANES; index++) {
      const lane = this.lanes[index];
      if (active[index] && lane !== undefined) lane.position += bytes;
    }
  }

  /** The last (< 64) bytes of a span, the padding and the length (RFC 1321 §3.1-3.2). */
  private finish(index: number, lane: Lane): void {
    const rest = lane.end - lane.position;
    const blocks = rest < 56 ? 1 : 2;
    const input = this.input(index, blocks * 64);
    input.fill(0);
    if (rest > 0) this.read(input.subarray(0, rest), lane.position);
    input[rest] = 0x80;
    const length = lane.end - lane.start;
    const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
    // The length in bits, 64-bit little-endian; lengths are below 2^53 bytes.
    view.setUint32(blocks * 64 - 8, (length % 2 ** 29) * 8, true);
    view.setUint32(blocks * 64 - 4, Math.floor(length / 2 ** 29), true);
    this.runKernel(
      blocks,
      this.lanes.map((_, other) => other === index),
    );
    const digest = Buffer.allocUnsafe(16);
    const words = this.getState(index);
    words.forEach((word, i) => {
      digest.writeUInt32LE(word, 4 * i);
    });
    this.digests[lane.span] = digest;
    this.lanes[index] = undefined;
    this.finishedSpans += 1;
  }

  private runKernel(
    blocks: number,
    active: readonly boolean[],
    pointers: readonly number[] = active.map((_, index) => INPUT_OFFSET + index * LANE_STRIDE),
  ): void {
    const kept = active.map((runs, index) => (runs ? undefined : this.getState(index)));
    this.kernel(...pointers, blocks);
    kept.forEach((words, index) => {
      if (words !== undefined) this.setState(index, words);
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
