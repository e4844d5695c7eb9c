/**
 * A published dataset's seal: what its tree looked like when it was published, so that a
 * later run can tell that it was changed since. Published trees are read-only, but their
 * owner may chmod them writable: a job running as the user that staged the dataset (`chmod
 * -R u+w` in a clean-up, a script that writes its outputs into `/data/<name>`) changed the
 * files, and every later run reused them as verified (exploratory review, 2026-12-07).
 *
 * Two order-independent sums of one hash per entry below the root, and their count:
 * - its shape: each entry's relative path and kind, a file's size, a link's target. A tree
 *   whose shape changed (a file added, removed, renamed, grown or cut) is not reused.
 * - its times: each file's modification time (path and time together, so that two files
 *   swapped differ). Times that changed alone are said,
 *   and the tree is still reused: a file rewritten in place with as many bytes (a memory-mapped
 *   array opened r+) changes only its time, but so does storage that sets times on its own
 *   after the writer's close (SMB servers stamp the last write at their deferred close; NFS
 *   write delegations): taken for a change, such storage would download every dataset again
 *   at every run, each worker in turn (second review, 2026-12-07).
 * Not modes (storage that keeps a chmod in one client's memory only, CIFS `dynperm`; a
 * kubelet's `fsGroup` adding rw for owner and group to every file of a writable volume: a
 * file made writable and left as it was is still the data), but for the owner's read bits
 * (`readable`) and files' write bits (`readOnly`, said, not judged); nor change times or
 * inode numbers (the manifest names its tree by inode: occupant.ts), nor directories' times
 * (their entries are in the shape). Taken while the tree is synced, every file closed (publish.ts).
 *
 * Not a defence against someone who means to hide a change (the owner can rewrite the
 * manifest too): it catches the accidents, at the cost of one stat per entry (~5 us each on
 * a local disk; on NFS, READDIRPLUS brings the attributes with the listing).
 */
import { lstatSync, opendirSync, readlinkSync, type Stats } from "node:fs";
import { lstat, opendir, readlink } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { mainThreadAlive } from "../util/main-thread-beat.ts";

export interface TreeSeal {
  /** Entries below the root (files, directories, links, anything else). */
  readonly entries: number;
  /** Four 32-bit sums of the entries' shape hashes, as 32 hex digits. */
  readonly shape: string;
  /** The same of the files' modification times. */
  readonly times: string;
  /**
   * No file had its owner's write bit when it was sealed (storage that keeps modes; not one
   * that ignores a chmod). Not in the comparison: a reuse that finds files writable since says
   * so (stage-dataset.ts).
   */
  readonly readOnly: boolean;
  /**
   * Every file and directory below the root could be read (and searched) by its owner when
   * it was sealed. Absent from seals before 2026-12-07's second form. A tree that
   * loses that is changed (compareSeal): a job's `chmod 0` on a file or directory left it
   * to be reused, and the jobs reading it failed on it; root, which reads through modes,
   * never noticed one its own job made (exploratory review, 2026-12-07). The group's and others'
   * bits are not judged (OWNER_READ).
   */
  readonly readable?: boolean;
}

const HEX_128 = /^[0-9a-f]{32}$/;

/** Whether `value` (read from a manifest) is a seal. */
export function isTreeSeal(value: unknown): value is TreeSeal {
  if (typeof value !== "object" || value === null) return false;
  const seal = value as Record<string, unknown>;
  return (
    typeof seal.entries === "number" &&
    Number.isSafeInteger(seal.entries) &&
    seal.entries >= 0 &&
    typeof seal.shape === "string" &&
    HEX_128.test(seal.shape) &&
    typeof seal.times === "string" &&
    HEX_128.test(seal.times) &&
    typeof seal.readOnly === "boolean" &&
    (seal.readable === undefined || typeof seal.readable === "boolean")
  );
}

/**
 * Four 32-bit sums of records' hashes, in any order. Each record is hashed by two FNV-1a
 * lanes (different offsets), each also mixed (murmur3's finaliser); the four are summed
 * apart. Not a cryptographic hash (sha1 was 2 us an entry, a fifth of a 20,000-file tar's
 * seal): the seal catches accidents, not someone hiding a change (above).
 */
class Sum {
  readonly #lanes = new Uint32Array(4);

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
  }

  hex(): string {
    return Array.from(this.#lanes, (lane) => lane.toString(16).padStart(8, "0")).join("");
  }
}

/**
 * A file's owner's read bit (published files are 0444), a directory's owner's read and search
 * bits (0555). Not the group's: storage that maps modes (a CIFS mount's file_mode=0600 seen
 * by another client) would make every dataset "changed" there, downloaded again at each run.
 */
const OWNER_READ = 0o400;
const OWNER_SEARCH = 0o500;

/** A tree's entries added up into its seal. */
class SealSum {
  readonly #shape = new Sum();
  readonly #times = new Sum();
  #entries = 0;
  #writable = false;
  #unreadable = false;

  directory(path: string, stats: Stats): void {
    // Not its write bits: CIFS mounts show dir_mode (0777 on Azure Files' CSI driver) whatever
    // a chmod did, and every reuse there was "made writable" (review, 2026-12-07).
    if ((stats.mode & OWNER_SEARCH) !== OWNER_SEARCH) this.#unreadable = true;
    this.#shape.add(`d\0${path}`);
    this.#entries++;
  }

  link(path: string, target: string): void {
    this.#shape.add(`l\0${path}\0${target}`);
    this.#entries++;
  }

  /** A regular file, or anything else (never made by dsfetch's writers), as lstat says. */
  stat(path: string, stats: Stats): void {
    if (stats.isFile()) {
      // The owner's and everyone's write bits, not the group's (o+w let any user of the
      // machine rewrite a dataset, and was not said: exploratory review, 2026-12-07). A
      // kubelet's fsGroup adds rw for owner and group to a writable volume's files: said at
      // every reuse there (the job should get the storage read-only: dsfetch k8s).
      if ((stats.mode & 0o202) !== 0) this.#writable = true;
      if ((stats.mode & OWNER_READ) !== OWNER_READ) this.#unreadable = true;
      this.#shape.add(`f\0${path}\0${stats.size}`);
      // As finely as the storage keeps it (ns on ext4, XFS, tmpfs, NFS: two files of an
      // archive written within one ms and then swapped, `mv a x; mv b a; mv x b`, differ).
      this.#times.add(`t\0${path}\0${stats.mtimeMs}`);
    } else {
      this.#shape.add(`o\0${path}`);
    }
    this.#entries++;
  }

  result(): TreeSeal {
    return {
      entries: this.#entries,
      shape: this.#shape.hex(),
      times: this.#times.hex(),
      readOnly: !this.#writable,
      readable: !this.#unreadable,
    };
  }
}

/** murmur3's 32-bit finaliser. */
function mix(value: number): number {
  let h = value;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
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
  return walk.sync === true ? sealSync(root, walk.progressed) : sealAsync(root, walk.progressed);
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
          sum.directory(path, lstatSync(`${root}/${path}`));
          toWalk.push(path);
        } else if (entry.isSymbolicLink()) {
          sum.link(path, readlinkSync(`${root}/${path}`));
        } else {
          sum.stat(path, lstatSync(`${root}/${path}`));
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

async function sealAsync(root: string, progressed: (() => void) | undefined): Promise<TreeSeal> {
  const sum = new SealSum();
  const toWalk = [""];
  for (let rel = toWalk.pop(); rel !== undefined; rel = toWalk.pop()) {
    const listing = await opendir(rel === "" ? root : `${root}/${rel}`, { bufferSize: 256 });
    try {
      for (let entry = await listing.read(); entry !== null; entry = await listing.read()) {
        const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
        if (entry.isDirectory()) {
          sum.directory(path, await lstat(`${root}/${path}`));
          toWalk.push(path);
        } else if (entry.isSymbolicLink()) {
          sum.link(path, await readlink(`${root}/${path}`));
        } else {
          sum.stat(path, await lstat(`${root}/${path}`));
        }
        // Each answer is progress: a small dataset a job filled with files, on slow storage.
        progressed?.();
      }
    } finally {
      await listing.close();
    }
  }
  return sum.result();
}

/**
 * How the tree at `root` compares with its seal: "holds"; "times" (the same shape, files of
 * other modification times); "changed" (another shape).
 */
export type SealVerdict = "holds" | "times" | "changed";

export interface SealComparison {
  readonly verdict: SealVerdict;
  /** Files read-only when sealed have a write bit now (a `chmod -R u+w`). */
  readonly madeWritable: boolean;
  /**
   * For "changed": what differs, in words, as far as the sums tell (how many entries more or
   * fewer; as many, of other names, sizes or kinds). The same words for every change was
   * wrong for some: a directory made unreadable was "added, removed, renamed or resized"
   * (exploratory review, 2026-12-07).
   */
  readonly change?: string;
}

export async function compareSeal(
  root: string,
  seal: TreeSeal,
  walk: SealWalk = {},
): Promise<SealComparison> {
  const now = await sealTree(root, walk);
  const madeWritable = seal.readOnly && !now.readOnly;
  if (now.entries !== seal.entries || now.shape !== seal.shape) {
    return { verdict: "changed", madeWritable, change: changeInWords(seal.entries, now.entries) };
  }
  // The root too (made 0555 after the seal, at publish: not in it).
  if (
    seal.readable === true &&
    (now.readable === false || ((await lstat(root)).mode & OWNER_SEARCH) !== OWNER_SEARCH)
  ) {
    return {
      verdict: "changed",
      madeWritable,
      change:
        "files or directories in it were made unreadable (chmod: their owner may no longer read them)",
    };
  }
  return { verdict: now.times === seal.times ? "holds" : "times", madeWritable };
}

/** What a change of shape was, from the entry counts at publish (`then`) and now. */
function changeInWords(then: number, now: number): string {
  const entries = (n: number) => `${n} ${n === 1 ? "entry" : "entries"}`;
  if (now > then) {
    return `files or directories were added (net: ${entries(now - then)} more than when it was published, ${now} not ${then})`;
  }
  if (now < then) {
    return `files or directories were removed (net: ${entries(then - now)} fewer than when it was published, ${now} not ${then})`;
  }
  return "files were renamed, resized, or replaced by others of another kind, with the same number of entries";
}

/** The change of a tree a directory of which this user may not read (published ones are 0555). */
export function unreadableInWords(code: string): string {
  return `a directory in it cannot be read by this user (${code}): added or changed since it was published`;
}
