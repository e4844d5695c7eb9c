/**
 * Worker thread of SlotHasher (slot-hasher.ts): hashes the parts of a multipart object from
 * the memory slots the download received them into, before they are reused. Each part comes
 * in order through one stream; eight parts are hashed at a time in the SIMD lanes
 * (md5-lanes.ts). A slot is given back once all its bytes are hashed.
 */
import { createHash, type Hash } from "node:crypto";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { Md5Lanes, type SharedMemory } from "./md5-lanes.ts";

interface Span {
  start: number;
  end: number;
}

/** Bytes of one part in a slot: `bytes` at `offset` of the memory, from `start` in the object. */
interface Piece {
  slot: number;
  stream: number;
  offset: number;
  start: number;
  bytes: number;
}

export type SlotMessage =
  | { type: "slot"; stream: number; part: number; slot: number; offset: number; bytes: number }
  | { type: "finish" };

const { memory, parts, pressure } = workerData as {
  memory: SharedMemory;
  parts: Span[];
  /** Slots a stream may have here before its next ones must be freed (it would wait). */
  pressure: number;
};
const port = parentPort;
if (port === null) throw new Error("slot-hash-worker must run as a worker thread");

const bytes = new Uint8Array(memory.buffer);
const queues: Piece[][] = parts.map(() => []);
const received = parts.map((part) => part.start);
const queuedByStream = new Map<number, number>();
/** Parts with pieces here. */
const active = new Set<number>();
let released: number[] = [];

const lanes = startLanes();
/** Without lanes (no WebAssembly SIMD): OpenSSL, each part as its pieces come. */
const hashes = new Map<number, Hash>();
const digests: (Buffer | undefined)[] = parts.map(() => undefined);

function startLanes(): Md5Lanes | undefined {
  try {
    // The lanes read the slots where they are (locate), copying only a span that crosses
    // from one slot to the next.
    // Lanes take the parts that have bytes here (each stream fetches a run of consecutive
    // parts: the next part in order may not have any yet).
    return new Md5Lanes(parts, read, { memory, locate }, () => active);
  } catch {
    return undefined;
  }
}

/** Where the `length` bytes at `position` are in the memory, if in one piece. */
function locate(position: number, length: number): number | undefined {
  for (const piece of queues[partAt(position)] ?? []) {
    if (position < piece.start || position >= piece.start + piece.bytes) continue;
    if (position + length > piece.start + piece.bytes) return undefined;
    return piece.offset + (position - piece.start);
  }
  return undefined;
}

/** Copies the bytes at `position` of the object from the pieces of its part. */
function read(target: Uint8Array, position: number): void {
  const part = partAt(position);
  let done = 0;
  for (const piece of queues[part] ?? []) {
    const at = position + done;
    if (done === target.length) break;
    if (at < piece.start || at >= piece.start + piece.bytes) continue;
    const from = piece.offset + (at - piece.start);
    const take = Math.min(target.length - done, piece.start + piece.bytes - at);
    // Buffer.fill copies with memcpy; TypedArray.set from shared memory copies word by word
    // (V8's relaxed_memmove): 2 GiB cost ~0.4 s more of this thread.
    Buffer.from(target.buffer, target.byteOffset + done, take).fill(
      bytes.subarray(from, from + take),
    );
    done += take;
  }
  if (done !== target.length) throw new Error(`bytes at ${position} are not in memory`);
}

/** The part holding `position` (parts are sorted and need not be adjacent). */
function partAt(position: number): number {
  let low = 0;
  let high = parts.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if ((parts[middle] as Span).start <= position) low = middle;
    else high = middle - 1;
  }
  return low;
}

/** Frees the slots whose bytes are all hashed. */
function releaseHashed(): void {
  if (lanes === undefined) return;
  for (const part of active) {
    const hashedTo = lanes.hashedTo(part);
    const queue = queues[part] as Piece[];
    while (queue.length > 0 && (queue[0] as Piece).start + (queue[0] as Piece).bytes <= hashedTo) {
      const piece = queue.shift() as Piece;
      released.push(piece.slot);
      queuedByStream.set(piece.stream, (queuedByStream.get(piece.stream) ?? 1) - 1);
    }
    if (queue.length === 0 && hashedTo === (parts[part] as Span).end) active.delete(part);
  }
}

function pressed(): boolean {
  releaseHashed();
  for (const count of queuedByStream.values()) if (count >= pressure) return true;
  return false;
}

function onSlot(message: Extract<SlotMessage, { type: "slot" }>): void {
  const { part, slot, stream, offset } = message;
  const span = parts[part];
  if (span === undefined) throw new Error(`no part ${part}`);
  if (received[part] === undefined || (received[part] as number) + message.bytes > span.end) {
    throw new Error(`part ${part + 1} got more bytes than it holds`);
  }
  const start = received[part] as number;
  received[part] = start + message.bytes;
  if (lanes === undefined) {
    let hash = hashes.get(part);
    if (hash === undefined) {
      hash = createHash("md5");
      hashes.set(part, hash);
    }
    hash.update(bytes.subarray(offset, offset + message.bytes));
    if (received[part] === span.end) {
      digests[part] = hash.digest();
      hashes.delete(part);
    }
    released.push(slot);
    return;
  }
  (queues[part] as Piece[]).push({ slot, stream, offset, start, bytes: message.bytes });
  queuedByStream.set(stream, (queuedByStream.get(stream) ?? 0) + 1);
  active.add(part);
}

function onFinish(): void {
  if (lanes !== undefined) {
    lanes.advance((index) => received[index] as number, true);
    if (!lanes.done) throw new Error("not every part was hashed");
    port?.postMessage({ type: "done", digests: lanes.results() });
    return;
  }
  const missing = digests.findIndex((digest, index) => {
    const span = parts[index] as Span;
    // An empty part has no piece: its digest is that of nothing.
    if (digest === undefined && span.end === span.start) {
      digests[index] = createHash("md5").digest();
      return false;
    }
    return digest === undefined;
  });
  if (missing >= 0) throw new Error(`part ${missing + 1} was not hashed`);
  port?.postMessage({ type: "done", digests });
}

port.on("message", (first: SlotMessage) => {
  try {
    // Every slot already sent is taken in before hashing: the lanes choose among all the
    // parts with bytes, and a stream is not seen as held up while its parts' bytes wait
    // here in messages not yet read.
    for (let message: SlotMessage | undefined = first; message !== undefined; ) {
      if (message.type === "finish") {
        onFinish();
        break;
      }
      onSlot(message);
      message = receiveMessageOnPort(port)?.message as SlotMessage | undefined;
      if (message === undefined && lanes !== undefined) {
        lanes.advance((index) => received[index] as number, false, pressed);
        releaseHashed();
      }
    }
    if (released.length > 0) {
      port.postMessage({ type: "released", slots: released });
      released = [];
    }
  } catch (error) {
    port.postMessage({
      type: "error",
      message: error instanceof Error ? error.message : String(error),
    });
  }
});
