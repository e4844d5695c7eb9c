// Run by extract-stall.test.ts as its own process group, which the test stops (SIGSTOP) and
// resumes: extracts with the `xz` found on PATH (a stand-in) and prints the outcome as JSON.
//
//   node test/archive/stall-freeze-child.ts <destination> <stall bound, ms>
import { extractTarInWorker } from "../../src/archive/extract-in-worker.ts";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";

const [destination = "", bound = ""] = process.argv.slice(2);
async function* source(): AsyncGenerator<Buffer> {
  yield Buffer.alloc(1000);
}
process.stdout.write("started\n");
try {
  const result = await extractTarInWorker(
    source(),
    { compression: "xz", destination, limits: DEFAULT_LIMITS, dataset: "ds" },
    { stallTimeoutMs: Number(bound) },
  );
  process.stdout.write(`${JSON.stringify({ files: result.files.length })}\n`);
} catch (error) {
  const code = (error as { code?: string }).code ?? String(error);
  process.stdout.write(`${JSON.stringify({ code })}\n`);
}
