/**
 * MD5 of every part of a multipart object, taken in a worker thread (slot-hash-worker.ts)
 * from the shared memory slots the download received the bytes into: nothing is read back
 * from the file, which direct writes (download-direct.ts) never put in the page cache.
 */
import { Worker } from "node:worker_threads";
import { workerFile } from "../util/worker-file.ts";
import { WORKER_RESOURCE_LIMITS } from "../util/worker-limits.ts";
import type { SharedMemory } from "./md5-lanes.ts";
import type { ByteSpan } from "./ordered-hasher.ts";
import type { SlotMessage } from "./slot-hash-worker.ts";
import { digestsOf, finishWorker } from "./worker-hasher.ts";

const WORKER_FILE = workerFile("slot-hash-worker", import.meta.url);

export class SlotHasher {
  private readonly worker: Worker;
  private readonly result: Promise<Buffer[]>;

  /**
   * @param memory a shared WebAssembly.Memory whose first LANES_RESERVED_BYTES are the
   *   hashing lanes' (md5-lanes.ts); the slots come after
   * @param pressure slots of one stream in the worker from which it hashes without waiting
   *   for all lanes (the stream would otherwise wait for a free slot forever)
   * @param onReleased called with each slot whose bytes are all hashed
   * @param onFailed called if the worker fails: slots it holds are never released, so the
   *   download must stop rather than wait for them
   */
  constructor(
    memory: SharedMemory,
    parts: readonly ByteSpan[],
    pressure: number,
    onReleased: (slot: number) => void,
    onFailed: (error: unknown) => void,
  ) {
    this.worker = new Worker(WORKER_FILE, {
      workerData: { memory, parts: parts.map((p) => ({ start: p.start, end: p.end })), pressure },
      resourceLimits: WORKER_RESOURCE_LIMITS,
    });
    this.worker.on("message", (message: { type: string; slots?: number[] }) => {
      if (message.type === "released") for (const slot of message.slots ?? []) onReleased(slot);
    });
    this.result = digestsOf(this.worker);
    this.result.catch(onFailed);
  }

  /** `bytes` of `part`, next in its order, are at `offset` of the memory, in `slot`. */
  add(stream: number, part: number, slot: number, offset: number, bytes: number): void {
    const message: SlotMessage = { type: "slot", stream, part, slot, offset, bytes };
    this.worker.postMessage(message);
  }

  /** The digest of every part, once all were added. */
  finish(): Promise<Buffer[]> {
    const message: SlotMessage = { type: "finish" };
    return finishWorker(this.worker, this.result, message);
  }

  dispose(): void {
    void this.worker.terminate();
  }
}
