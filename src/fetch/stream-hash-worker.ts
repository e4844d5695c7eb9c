/**
 * Worker thread of WorkerSpanDigests (stream-hasher.ts): hashes batches of a stream posted in
 * order by the main thread, which keeps decompressing and writing the archive meanwhile
 * (MD5 costs ~1.3 s of CPU per GiB here, on the thread that also writes every file).
 */
import { parentPort, workerData } from "node:worker_threads";
import type { ByteSpan } from "./ordered-hasher.ts";
import { SpanDigests } from "./span-digests.ts";
import type { DigestAlgorithm } from "./verification.ts";

type Message = { type: "bytes"; bytes: Uint8Array } | { type: "finish" };

const { algorithm, spans } = workerData as { algorithm: DigestAlgorithm; spans: ByteSpan[] };
const port = parentPort;
if (port === null) throw new Error("stream-hash-worker must run as a worker thread");
const digests = new SpanDigests(algorithm, spans);

port.on("message", (message: Message) => {
  try {
    if (message.type === "bytes") {
      digests.update(message.bytes);
      // The sender bounds what is in flight by these acknowledgements, and refills the
      // batch's memory (hashing copied what it needed).
      const returned = message.bytes.buffer;
      if (returned instanceof ArrayBuffer) {
        port.postMessage({ type: "hashed", bytes: message.bytes.length, returned }, [returned]);
      } else port.postMessage({ type: "hashed", bytes: message.bytes.length });
    } else
      port.postMessage({ type: "done", digests: digests.digests.map((d) => new Uint8Array(d)) });
  } catch (error) {
    port.postMessage({
      type: "error",
      message: error instanceof Error ? error.message : String(error),
    });
  }
});
