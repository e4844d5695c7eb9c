/**
 * A published dataset's seal: what its tree looked like when it was published, so that a
 * later run can tell that it was changed since. Published trees are read-only, but their
 * owner may chmod them writable: a job running as the user that staged the dataset (`chmod
 * -R u+w` in a clean-up, a script that writes its outputs into `/data/<name>`) changed the
 * files, and every later run reused them as verified (exploratory review, 2026-12-07).
 *
 * The seal is a count and an order-independent sum of one hash per entry below the root:
 * its relative path and kind; for a file its size and modification time (whole ms); for
 * a link its target. What the files hold is what matters: a change of their bytes changes
 * their time, and a file made writable and left as it was is still the data (it is caught
 * when it is written to). Not modes, then (storage that keeps a chmod in one client's memory
 * only, CIFS `dynperm`; a kubelet's `fsGroup` adding g+w to every file of a volume), nor
 * change times or inode numbers (a copy of the storage that keeps times, `cp -a` or
 * `rsync -a`, keeps its datasets), nor directories' times (their entries are in the sum).
 * Taken once the tree is synced, as every host reads it back (publish.ts).
 *
 * Not a defence against someone who means to hide a change (the owner can rewrite the
 * manifest too): it catches the accidents, at the cost of one stat per entry (~3 us each on
 * a local disk; on NFS, READDIRPLUS brings the attributes with the listing).
 */
import { lstatSync, opendirSync, readlinkSync, type Stats } from "node:fs";
import { lstat, opendir, readlink } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { mainThreadAlive } from "../util/main-thread-beat.ts";

export interface TreeSeal {
  /** Entries below the root (files, directories, links). */
  readonly entries: number;
  /** Four 32-bit sums of the entries' hashes, as 32 hex digits. */
  readonly sum: string;
}

/** Whether `value` (read from a manifest) is a seal. */
export function isTreeSeal(value: unknown): value is TreeSeal {
  if (typeof value !== "object" || value === null) return false;
  const seal = value as Record<string, unknown>;
  return (
    typeof seal.entries === "number" &&
    Number.isSafeInteger(seal.entries) &&
    seal.entries >= 0 &&
    typeof seal.sum === "string" &&
    /^[0-9a-f]{32}$/.test(seal.sum)
  );
}

/**
 * Adds up the entries of a tree into its seal, in any order. Each entry's record is hashed by
 * two FNV-1a lanes (different offsets), each also mixed (murmur3's finaliser); the four are
 * summed apart. Not a cryptographic hash (sha1 was 2 us an entry, a fifth of a 20,000-file
 * tar's seal): the seal catches accidents, not someone hiding a change (above).
 */
class SealSum {
  readonly #lanes = new Uint32Array(4);
  #entries = 0;

  add(record: string): void {
    let a = 0x811c9dc5;
    let b = 0x3b9aca07;
    for (let i = 0; i < record.length; i++) {
      const code = record.charCodeAt(i);
      a = Math.imul(a ^ code, 0x01000193);
      b = Math.imul(b ^ code, 0x01000193);
    }
    const lanes = this.#lanes;
    lanes[0] = ((lanes[0] ?? 0) + a) >>> 0;
    lanes[1] = ((lanes[1] ?? 0) + b) >>> 0;
    lanes[2] = ((lanes[2] ?? 0) + mix(a)) >>> 0;
    lanes[3] = ((lanes[3] ?? 0) + mix(b ^ 0x9e3779b9)) >>> 0;
    this.#entries++;
  }

  result(): TreeSeal {
    const sum = Array.from(this.#lanes, (lane) => lane.toString(16).padStart(8, "0")).join("");
    return { entries: this.#entries, sum };
  }
}

/** murmur3's 32-bit finaliser. */
function mix(value: number): number {
  let h = value;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A file's record (the same from both walks). */
function fileRecord(path: string, stats: Stats): string {
  // Whole milliseconds: storage keeps ns (ext4, XFS, NFS), 100 ns (SMB) or whole seconds
  // (some FUSE mounts), each the same for every host and every later look; a rewrite of the
  // same size within the second of the first write is still caught.
  return `f\0${path}\0${stats.size}\0${Math.floor(stats.mtimeMs)}`;
}

/** The event loop gets a turn this often (the lock's refreshes: permissions.ts). */
const TURN_EVERY_MS = 20;

export interface SealWalk {
  /**
   * Synchronous calls, with turns for the event loop: ~5 us an entry against ~90 us for async
   * ones (permissions.ts), for trees of many files, whose caller has the main thread watched
   * (util/main-thread-beat.ts). Async ones otherwise: a hung mount then holds a pool thread,
   * not the main thread, and the caller's clock still runs.
   */
  readonly sync?: boolean;
  /** Called at every turn: a long walk is progress to the caller's clock (storage-call.ts). */
  readonly progressed?: () => void;
}

/** The seal of the tree at `root`. */
export function sealTree(root: string, walk: SealWalk = {}): Promise<TreeSeal> {
  return walk.sync === true ? sealSync(root, walk.progressed) : sealAsync(root);
}

async function sealSync(root: string, progressed: (() => void) | undefined): Promise<TreeSeal> {
  const sum = new SealSum();
  let turnAt = performance.now() + TURN_EVERY_MS;
  const toWalk = [""];
  for (let rel = toWalk.pop(); rel !== undefined; rel = toWalk.pop()) {
    const listing = opendirSync(rel === "" ? root : `${root}/${rel}`, { bufferSize: 256 });
    try {
      for (let entry = listing.readSync(); entry !== null; entry = listing.readSync()) {
        mainThreadAlive();
        const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
        if (entry.isDirectory()) {
          sum.add(`d\0${path}`);
          toWalk.push(path);
        } else if (entry.isSymbolicLink()) {
          sum.add(`l\0${path}\0${readlinkSync(`${root}/${path}`)}`);
        } else {
          const stats = lstatSync(`${root}/${path}`);
          sum.add(stats.isFile() ? fileRecord(path, stats) : `o\0${path}`);
        }
        // At any entry: a folder of a million objects is one directory (review).
        if (performance.now() >= turnAt) {
          progressed?.();
          await sleep(0);
          turnAt = performance.now() + TURN_EVERY_MS;
        }
      }
    } finally {
      listing.closeSync();
    }
  }
  return sum.result();
}

async function sealAsync(root: string): Promise<TreeSeal> {
  const sum = new SealSum();
  const toWalk = [""];
  for (let rel = toWalk.pop(); rel !== undefined; rel = toWalk.pop()) {
    const listing = await opendir(rel === "" ? root : `${root}/${rel}`, { bufferSize: 256 });
    try {
      for (let entry = await listing.read(); entry !== null; entry = await listing.read()) {
        const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
        if (entry.isDirectory()) {
          sum.add(`d\0${path}`);
          toWalk.push(path);
        } else if (entry.isSymbolicLink()) {
          sum.add(`l\0${path}\0${await readlink(`${root}/${path}`)}`);
        } else {
          const stats = await lstat(`${root}/${path}`);
          sum.add(stats.isFile() ? fileRecord(path, stats) : `o\0${path}`);
        }
      }
    } finally {
      await listing.close();
    }
  }
  return sum.result();
}

/** Whether the tree at `root` still has the seal `seal`. */
export async function sealHolds(
  root: string,
  seal: TreeSeal,
  walk: SealWalk = {},
): Promise<boolean> {
  const now = await sealTree(root, walk);
  return now.entries === seal.entries && now.sum === seal.sum;
}
