// dsfetch's extraction alone, from a local archive: what `tar -xf` does, by the code a fetch
// runs (dist/, as installed users run it): the magic check, then the decompressor and the tar
// writer on their worker thread (extractTarInWorker), fed 8 MiB ranges in shared memory; for a zip, its
// extraction from the file on its thread (extractZipInWorker); no download, no verification hash, no sync, no publish. bench/archive.ts times it beside
// `tar -xf` of the same file, for the goal "small-file extraction within 1.2x of GNU tar".
//
//   node dist/bundle/extract-local.js <archive> <existing empty directory>
//   node bench/extract-local.mjs <archive> <existing empty directory>   (unbundled)
//
// The benchmarks run it bundled into dist/bundle/ (bench/common.ts buildDsfetch), beside the
// bundled worker threads, as the `dsfetch` command runs (scripts/bundle.ts): started from the
// ~25 modules of dist/ instead, it paid module loading a fetch does not.
//
// Plain JavaScript, not TypeScript, on purpose: a .ts entry point makes Node load its type
// stripper first, ~0.1 s of start-up (a 1-file tar: 0.28 s -> 0.17 s here) that dsfetch's
// own dist/ never pays and that was counted against its extraction.

// First, as the CLI does (before the thread pool starts: the parallel writes of slow storage
// run there).
import "../dist/cli/thread-pool-size.js";
import { closeSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";
// dist/ is what bench/all.ts and bench/archive.ts build before they time anything.
import { extractTarInWorker } from "../dist/archive/extract-in-worker.js";
import { archiveFormatOf } from "../dist/archive/formats.js";
import { DEFAULT_LIMITS } from "../dist/archive/limits.js";
import { checkMagic, MAGIC_BYTES } from "../dist/archive/magic.js";
import { extractZipInWorker } from "../dist/archive/zip-in-worker.js";
import { BufferPool } from "../dist/util/buffer-pool.js";
import { ChunkLedger } from "../dist/util/chunk-ledger.js";

const [archive, destination] = process.argv.slice(2);
if (archive === undefined || destination === undefined) {
  process.stderr.write("usage: node bench/extract-local.mjs <archive> <directory>\n");
  process.exit(2);
}

const format = archiveFormatOf(basename(archive));
if (format === undefined) {
  process.stderr.write(`${archive}: not an archive dsfetch expands\n`);
  process.exit(2);
}
// As a fetch takes it (config/tuning.ts): "auto" unless set.
const writes = process.env.DSFETCH_FILE_WRITES || undefined;
if (format.format === "zip") {
  // A zip is extracted from its downloaded file, on a thread of its own (stage/expand.ts).
  const result = await extractZipInWorker({
    zipPath: archive,
    destination,
    limits: DEFAULT_LIMITS,
    dataset: "bench",
    writes,
  });
  process.stdout.write(
    `${JSON.stringify({ files: result.files.length, bytes: result.bytes, writtenInParallel: result.writtenInParallel })}\n`,
  );
  process.exit(0);
}

// As a fetch hands a streamed archive over (stage/expand.ts): 8 MiB ranges in shared memory,
// read in place by the extraction thread and reused once it reports their bytes taken. Read
// into ordinary 1 MiB buffers instead, every byte was copied into transfer batches first (95 ms
// for a 97 MB tar here, most of it page faults on fresh batches), which a fetch never does.
const RANGE = 8 << 20;
const buffers = new BufferPool(RANGE, 4, { shared: true });
const ledger = new ChunkLedger(1, (chunk) => buffers.give(chunk));

/** @param {string} path @returns {AsyncGenerator<Buffer>} */
async function* read(path) {
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const chunk = buffers.take(RANGE);
      const n = readSync(fd, chunk, 0, RANGE, null);
      if (n === 0) return;
      const filled = chunk.subarray(0, n);
      ledger.add(filled);
      yield filled;
    }
  } finally {
    closeSync(fd);
  }
}

const head = Buffer.alloc(MAGIC_BYTES);
const fd = openSync(archive, "r");
const headBytes = readSync(fd, head, 0, MAGIC_BYTES, 0);
closeSync(fd);
const chain = checkMagic(format.format, head.subarray(0, headBytes), "bench", archive);
const result = await extractTarInWorker(
  read(archive),
  {
    compression: chain.compression,
    destination,
    limits: DEFAULT_LIMITS,
    dataset: "bench",
    writes,
  },
  { onTaken: (bytes) => ledger.advance(0, bytes) },
);
process.stdout.write(
  `${JSON.stringify({ files: result.files.length, bytes: result.bytes, writtenInParallel: result.writtenInParallel })}\n`,
);
