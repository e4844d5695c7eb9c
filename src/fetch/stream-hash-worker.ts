/**
 * Worker thread of WorkerSpanDigests (stream-hasher.ts): hashes batches of a stream posted in
 * order by the main thread, which keeps decompressing and writing the archive meanwhile
 * (MD5 costs ~1.3 s of CPU per GiB here, on the thread that also writes every file).
 *
 * Two ways:
 * - One span at a time (SpanDigests, Node's MD5 or the checksum): each batch is hashed and
 *   acknowledged as it comes.
 * - Several parts at once in the SIMD lanes (Md5Lanes), when the object's parts are small
 *   (`holdBytes` given; stream-hasher.ts streamLanesApply): the stream arrives in order, so a
 *   part's lane has bytes only once the parts before it are here; the batches are held (read
 *   in place where they are shared memory, copied otherwise) until `holdBytes` are here, then
 *   every part with bytes is hashed together and the bytes below the lowest part not done are
 *   acknowledged. Measured (327 MiB tar of 20,000 files in 8 MiB parts, the AWS CLI's and
 *   boto3's part size, on tmpfs, alternated 4x): 1.00-1.05 s -> 0.86-0.91 s, user CPU
 *   1.02-1.08 -> 0.85-0.89 s, peak RSS +4-14 MiB (Node's MD5 was the longest thread,
 *   493 MiB/s).
 *   No wait on each other (stream-hasher.ts): the sender waits with more than `holdBytes`
 *   unacknowledged and goes on at `holdBytes` or less, while this thread hashes whenever it
 *   holds `holdBytes` (and then holds < 64 bytes). So once every acknowledgement sent has
 *   arrived, either this thread holds no more than `holdBytes` (the sender goes on) or it has
 *   hashed and acknowledged (found in review: the sender went on only at half, and could wait
 *   with 20 MiB unacknowledged that this thread, short of 32 MiB, would never hash).
 */
import { parentPort, workerData } from "node:worker_threads";
import { Md5Lanes } from "./md5-lanes.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import { SpanDigests } from "./span-digests.ts";
import type { DigestAlgorithm } from "./verification.ts";

export interface StreamHashJob {
  readonly algorithm: DigestAlgorithm;
  readonly spans: ByteSpan[];
  /** Lanes (MD5 of small parts): hash once this many bytes are held. */
  readonly holdBytes?: number | undefined;
}

type Message = { type: "bytes"; bytes: Uint8Array } | { type: "finish" };

const { algorithm, spans, holdBytes } = workerData as StreamHashJob;
const port = parentPort;
if (port === null) throw new Error("stream-hash-worker must run as a worker thread");

/** Gives a transferred batch back for reuse, and acknowledges `bytes` (maybe 0). */
function acknowledge(bytes: number, given?: Uint8Array): void {
  const returned = given?.buffer;
  if (returned instanceof ArrayBuffer) {
    port?.postMessage({ type: "hashed", bytes, returned }, [returned]);
  } else port?.postMessage({ type: "hashed", bytes });
}

/** The lanes' way: bytes held from `acknowledged` to `received`, in order. */
class HeldLanes {
  private readonly hold: number;
  private readonly lanes: Md5Lanes;
  private readonly held: { start: number; view: Uint8Array }[] = [];
  private received = 0;
  private acknowledged = 0;
  /** The first span not finished. */
  private unfinished = 0;

  constructor(hold: number) {
    this.hold = hold;
    this.lanes = new Md5Lanes(spans, (target, position) => this.read(target, position));
  }

  add(bytes: Uint8Array): void {
    // Shared memory stays where it is (the sender reuses it only once acknowledged); a
    // transferred batch is copied and given back at once.
    const shared = bytes.buffer instanceof SharedArrayBuffer;
    this.held.push({ start: this.received, view: shared ? bytes : bytes.slice() });
    this.received += bytes.length;
    if (!shared) acknowledge(0, bytes);
    if (this.received - this.acknowledged >= this.hold) this.hash(false);
  }

  digests(): Buffer[] {
    this.hash(true);
    return this.lanes.results();
  }

  /** Hashes every byte held (the last < 64 of a part waiting for its end unless `final`). */
  private hash(final: boolean): void {
    this.lanes.advance(this.received, final, () => true);
    for (;;) {
      const span = spans[this.unfinished];
      if (span === undefined || this.lanes.hashedTo(this.unfinished) < span.end) break;
      this.unfinished += 1;
    }
    // No lane reads below its position: everything below the lowest one is done with.
    const done =
      this.unfinished < spans.length ? this.lanes.hashedTo(this.unfinished) : this.received;
    if (done <= this.acknowledged) return;
    acknowledge(done - this.acknowledged);
    this.acknowledged = done;
    while (this.held.length > 0) {
      const first = this.held[0];
      if (first === undefined || first.start + first.view.length > done) break;
      this.held.shift();
    }
  }

  private read(target: Uint8Array, position: number): void {
    let filled = 0;
    for (const { start, view } of this.held) {
      const from = position + filled;
      if (start + view.length <= from) continue;
      if (start > from) break;
      const take = Math.min(start + view.length - from, target.length - filled);
      target.set(view.subarray(from - start, from - start + take), filled);
      filled += take;
      if (filled === target.length) return;
    }
    throw new Error(`stream hashing: bytes at ${position + filled} are not held`);
  }
}

const lanes = holdBytes === undefined ? undefined : new HeldLanes(holdBytes);
const inOrder = lanes === undefined ? new SpanDigests(algorithm, spans) : undefined;

port.on("message", (message: Message) => {
  try {
    if (message.type === "bytes") {
      if (lanes !== undefined) lanes.add(message.bytes);
      else {
        inOrder?.update(message.bytes);
        // The sender bounds what is in flight by these acknowledgements, and refills the
        // batch's memory (hashing copied what it needed).
        acknowledge(message.bytes.length, message.bytes);
      }
    } else {
      const digests = lanes !== undefined ? lanes.digests() : (inOrder?.digests ?? []);
      port.postMessage({ type: "done", digests: digests.map((d) => new Uint8Array(d)) });
    }
  } catch (error) {
    port.postMessage({
      type: "error",
      message: error instanceof Error ? error.message : String(error),
    });
  }
});
