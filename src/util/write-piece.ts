/**
 * The most bytes given to one write(2) into the page cache. Linux (6.x, ext4 with large
 * folios) sizes the page-cache folios of a buffered write by the length of the write: a
 * 1 MiB write gets 1 MiB folios. On this project's VMs (virtio-balloon free page reporting:
 * memory free for ~2 s goes back to the host, and touching it again faults on the host) the
 * large folios come from exactly that memory: writing 2 GiB to a fresh file after 12-15 s of
 * rest took 3.3-5.3 s of system CPU in 1 MiB writes, 1.9 s in 512 KiB writes, and 0.37-0.43 s
 * in 64-256 KiB writes (0.5-1.0 s in 16-32 KiB ones: more calls). A 2 GiB object: 6.3-7.7 s
 * -> 3.7-4.2 s. Bytes are still batched (a 1 MiB batch is written in 4 calls).
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import type { SlowCreates } from "./slow-creates.ts";

export const WRITE_PIECE = 256 * 1024;

/** Writes all of `data` at the file's position, WRITE_PIECE bytes per call at most. */
export function writeAllSync(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) {
    const written = writeSync(fd, data, done, Math.min(data.length - done, WRITE_PIECE));
    // A write of nothing would loop forever: the disk is full (as download-object.ts says).
    if (written === 0)
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    done += written;
  }
}

/** Creates `path` (it must not exist) with `data` and `mode`, like writeFileSync's "wx". */
export function writeNewFileSync(path: string, data: Uint8Array, mode: number): void {
  const fd = openSync(path, "wx", mode);
  try {
    writeAllSync(fd, data);
  } finally {
    closeSync(fd);
  }
}

/**
 * writeNewFileSync, with its open and close timed into `creates` (util/slow-creates.ts); once
 * creates turned out slow (network storage), the file is written through the thread pool
 * instead, so that several are created at once and this thread is not blocked meanwhile.
 */
export async function writeNewFileTimed(
  path: string,
  data: Uint8Array,
  mode: number,
  creates: SlowCreates,
  signal?: AbortSignal,
): Promise<void> {
  if (creates.slow) {
    creates.parallelFiles++;
    const turn = creates.acquire();
    if (turn !== undefined) await turn;
    try {
      // The folder failed while this file waited for its turn: no more files.
      signal?.throwIfAborted();
      await writeNewFileAsync(path, data, mode);
    } finally {
      creates.release();
    }
    return;
  }
  creates.begin();
  const fd = openSync(path, "wx", mode);
  creates.end();
  try {
    writeAllSync(fd, data);
  } finally {
    creates.begin();
    closeSync(fd);
    creates.end();
    creates.fileDone();
  }
}

/** writeNewFileSync through the thread pool. */
async function writeNewFileAsync(path: string, data: Uint8Array, mode: number): Promise<void> {
  const handle = await open(path, "wx", mode);
  try {
    for (let done = 0; done < data.length; ) {
      const { bytesWritten } = await handle.write(
        data,
        done,
        Math.min(data.length - done, WRITE_PIECE),
      );
      // A write of nothing would loop forever: the disk is full (as writeAllSync).
      if (bytesWritten === 0)
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), {
          code: "ENOSPC",
        });
      done += bytesWritten;
    }
  } finally {
    await handle.close();
  }
}
