/**
 * A folder that changed while it was fetched (an object overwritten, deleted, or not the size
 * or ETag the listing gave: OBJECT_CHANGED) is staged again from a new listing
 * (stage/stage-dataset.ts). Every object was downloaded again, those already written and
 * verified too: a 1 TB folder in which one small file is rewritten now and then was a second
 * 1 TB download, and after 3 restarts a failure (issue: folder restarts refetch everything).
 *
 * Now the failed attempt's directory is kept until the next attempt has started: its objects
 * that were written and verified (VerifiedObjects), and that the new listing gives with the
 * same key, size and ETag, are moved (renamed: same filesystem, both private) into the new
 * attempt and not fetched again; everything else follows the new listing (objects gone from
 * it are left behind and removed with the old attempt; changed ones are fetched fresh).
 *
 * What "verified" means is what it meant for the old attempt: its bytes were read pinned to
 * that ETag (If-Match) and checked as download-prefix.ts checks them; an equal ETag (and size)
 * in the new listing is the same object. Objects of a listing without ETags are never kept:
 * their LastModified (what tells them apart then) has a resolution of a second.
 *
 * Memory: two bytes per object (VerifiedObjects), and 4-32 for a digest kept as its bytes,
 * which download-prefix.ts keeps for the manifest anyway; during the restart's new listing, the old listing and its record are held
 * beside it (about twice a folder's usual peak, briefly). The two listings are matched by walking both in their
 * order (UTF-8 byte order, list-tree.ts), no map of keys. A listing out of that order only keeps fewer objects, never a wrong one: an
 * object is kept only on an equal key.
 */
import { renameSync } from "node:fs";
import { rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { formatBytes } from "../config/size.ts";
import { DsfetchError } from "../errors.ts";
import { mainThreadAlive, syncStorageCallsAhead } from "../util/main-thread-beat.ts";
import { SlowCreates } from "../util/slow-creates.ts";
import type { WriteMode } from "../util/write-mode.ts";
import { storageError } from "../volumes/attempt.ts";
import type { FileView, ManifestFile } from "../volumes/manifest.ts";
import { DIGEST_BYTES } from "./checksum/algorithms.ts";
import { dirMaker } from "./dir-maker.ts";
import { compareUtf8 } from "./list-tree.ts";
import type { ListedObject, ResolvedPrefix } from "./resolve.ts";

/** Methods of verification told apart per record: one byte per object (0: none). */
const MAX_METHODS = 255;

/** Per object (VerifiedObjects.state): not recorded, or recorded with its digest kept so. */
const NOT_RECORDED = 0;
const NO_DIGEST = 1;
/** Its digest is "md5:" + its ETag as listed: made again from the listing when asked for. */
const MD5_OF_ETAG = 2;
/** Another digest (an S3 additional checksum's, an MD5 where the listing gave no ETag). */
const OTHER_DIGEST = 3;
/** A digest of a fixed-size kind, its bytes in that kind's array: PACKED + the kind's index. */
const PACKED = 4;

/**
 * The manifest digests of a fixed size (verification.ts fileDigest: "md5:" + hex, an S3
 * additional checksum as "<algorithm>:" + base64), kept as their bytes: a folder whose
 * objects all carry a checksum (AWS SDKs add CRC64NVME to every upload since 2025) held a
 * string and a map entry per object, ~120 B, against 8 bytes now.
 */
const PACKED_KINDS: readonly { prefix: string; bytes: number; encoding: "hex" | "base64" }[] = [
  { prefix: "md5:", bytes: 16, encoding: "hex" },
  ...(["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"] as const).map((algorithm) => ({
    prefix: `${algorithm.toLowerCase()}:`,
    bytes: DIGEST_BYTES[algorithm],
    encoding: "base64" as const,
  })),
];

/** Heap of a digest kept as a string in otherDigests: the string and its map entry (~120 B). */
const SPARSE_DIGEST_BYTES = 100;

/**
 * The bytes of `digest` as a digest of PACKED_KINDS[kind]; undefined unless it is one and they
 * encode back to exactly `digest` (upper-case hex, base64 not in its one canonical form, the
 * wrong length).
 */
function decodeDigest(kind: number, digest: string): Buffer | undefined {
  const found = PACKED_KINDS[kind];
  if (found === undefined || !digest.startsWith(found.prefix)) return undefined;
  const text = digest.slice(found.prefix.length);
  const value = Buffer.from(text, found.encoding);
  return value.length === found.bytes && value.toString(found.encoding) === text
    ? value
    : undefined;
}

/**
 * The objects of one listing written and verified in an attempt's directory, by their index
 * in the listing: how each was verified and its digest, two bytes per object; the manifest's
 * entries (path, size, digest) are made from the listing when they are written (filesOf).
 * An entry held per object was ~145 B of heap (its object, and a digest string "md5:…" that
 * is the listing's ETag again for every single-part object verified by MD5): with the
 * listing's, ~330 B per object at the end of a folder's download, ~420 MB for 1.28 M objects
 * (ImageNet), enough to end a sidecar with a small memory limit; ~145 B now, with the
 * listing's objects of resolve.ts (heap snapshots of a 100,000-object folder; memory review
 * of folders, 2026-12-06, test/fetch/folder-memory.test.ts). Digests that are not an MD5 of
 * the ETag (a store that gives every object an additional checksum) are kept as their bytes
 * (PACKED_KINDS: 4-32 bytes per object of that kind); only a digest of no fixed-size kind
 * costs an entry in otherDigests.
 */
export class VerifiedObjects {
  /** Per object: 1 + its method's index in `methods`; 0 for none. */
  private readonly how: Uint8Array;
  /** Per object: NOT_RECORDED, NO_DIGEST, MD5_OF_ETAG, OTHER_DIGEST, or PACKED + a kind. */
  private readonly state: Uint8Array;
  /** The digests of the objects recorded with OTHER_DIGEST (most objects have none here). */
  private readonly otherDigests = new Map<number, string>();
  /** Per kind of PACKED_KINDS, once an object has one: its bytes at index × the kind's size. */
  private readonly packed: (Uint8Array | undefined)[] = [];
  private readonly methods: string[] = [];
  private objects = 0;
  private total = 0;

  constructor(objects: number) {
    this.how = new Uint8Array(objects);
    this.state = new Uint8Array(objects);
  }

  /** How many objects are recorded. */
  get count(): number {
    return this.objects;
  }

  /** Their bytes. */
  get bytes(): number {
    return this.total;
  }

  get length(): number {
    return this.state.length;
  }

  /** Whether the object at `index` is recorded (written and verified). */
  has(index: number): boolean {
    return (this.state[index] ?? NOT_RECORDED) !== NOT_RECORDED;
  }

  /**
   * The object at `index` (`object`, as listed) is written and verified (by `method`, as in the
   * manifest), its manifest digest `digest` (none for some methods).
   */
  record(
    index: number,
    object: { readonly bytes: number; readonly etag: string },
    digest: string | undefined,
    method: string,
  ): void {
    if (this.has(index)) this.forget(index, object);
    let at = this.methods.indexOf(method);
    if (at < 0 && this.methods.length < MAX_METHODS) at = this.methods.push(method) - 1;
    // More methods than a byte tells apart (never seen: a handful exist): its entry stays
    // for the manifest, but the object cannot be kept by a later attempt.
    this.how[index] = at < 0 ? 0 : at + 1;
    if (digest === undefined) this.state[index] = NO_DIGEST;
    else if (object.etag !== "" && digest === `md5:${object.etag}`) {
      this.state[index] = MD5_OF_ETAG;
    } else {
      const kind = this.pack(index, digest);
      if (kind >= 0) this.state[index] = PACKED + kind;
      else {
        this.state[index] = OTHER_DIGEST;
        this.otherDigests.set(index, digest);
      }
    }
    this.objects += 1;
    this.total += object.bytes;
  }

  /** Not (or no longer) in place: a kept object (`object`, as listed) whose file was not found. */
  forget(index: number, object: { readonly bytes: number }): void {
    if (!this.has(index)) return;
    if (this.state[index] === OTHER_DIGEST) this.otherDigests.delete(index);
    this.state[index] = NOT_RECORDED;
    this.how[index] = 0;
    this.objects -= 1;
    this.total -= object.bytes;
  }

  /** How the object at `index` was verified; undefined when it is not recorded. */
  methodOf(index: number): string | undefined {
    const how = this.how[index] ?? 0;
    return how === 0 ? undefined : this.methods[how - 1];
  }

  /** The manifest digest of the object at `index` (`object`, as listed), if it has one. */
  digestOf(index: number, object: { readonly etag: string }): string | undefined {
    switch (this.state[index]) {
      case MD5_OF_ETAG:
        return `md5:${object.etag}`;
      case OTHER_DIGEST:
        return this.otherDigests.get(index);
      case undefined:
      case NOT_RECORDED:
      case NO_DIGEST:
        return undefined;
      default:
        return this.unpack(index, (this.state[index] as number) - PACKED);
    }
  }

  /**
   * Stores `digest` as the bytes of its kind: the kind's index, or -1 when it is of none or
   * would not come back as the same string (upper-case hex, base64 not in its one canonical
   * form): then it is kept as it is.
   */
  private pack(index: number, digest: string): number {
    const kind = PACKED_KINDS.findIndex((candidate) => digest.startsWith(candidate.prefix));
    const value = decodeDigest(kind, digest);
    const { bytes } = PACKED_KINDS[kind] ?? { bytes: 0 };
    if (value === undefined) return -1;
    let array = this.packed[kind];
    if (array === undefined) {
      // An array for every object of the listing pays once about as many digests are kept as
      // strings as its bytes: a large folder with a few such objects keeps them as strings.
      // (Strings of every kind are counted: an odd mix of kinds may allocate one early, which
      // costs memory, never a wrong digest.)
      if ((this.otherDigests.size + 1) * SPARSE_DIGEST_BYTES < this.state.length * bytes) {
        return -1;
      }
      array = new Uint8Array(this.state.length * bytes);
      this.packed[kind] = array;
      // The strings of this kind kept so far go into it.
      for (const [other, text] of this.otherDigests) {
        const kept = decodeDigest(kind, text);
        if (kept === undefined) continue;
        array.set(kept, other * bytes);
        this.state[other] = PACKED + kind;
        this.otherDigests.delete(other);
      }
    }
    array.set(value, index * bytes);
    return kind;
  }

  private unpack(index: number, kind: number): string | undefined {
    const array = this.packed[kind];
    const found = PACKED_KINDS[kind];
    if (array === undefined || found === undefined) return undefined;
    const value = Buffer.from(array.buffer, array.byteOffset + index * found.bytes, found.bytes);
    return found.prefix + value.toString(found.encoding);
  }

  /**
   * The manifest's files (volumes/manifest.ts) once every object of `listing`, the listing
   * this record is of, is recorded: made from it one at a time, in its order.
   */
  filesOf(listing: ResolvedPrefix): ListingFiles {
    return new ListingFiles(listing, this);
  }
}

/**
 * A folder's manifest entries, `{ path, bytes, digest? }` per object in listing order, as
 * download-prefix.ts held them before: made when they are written (each one garbage at once).
 */
export class ListingFiles implements FileView {
  readonly length: number;
  private readonly listing: ResolvedPrefix;
  private readonly verified: VerifiedObjects;

  constructor(listing: ResolvedPrefix, verified: VerifiedObjects) {
    if (verified.length !== listing.objects.length) {
      throw new Error(
        `internal: a record of ${verified.length} objects for a listing of ${listing.objects.length}`,
      );
    }
    this.listing = listing;
    this.verified = verified;
    this.length = listing.objects.length;
  }

  *[Symbol.iterator](): Iterator<ManifestFile> {
    const { objects } = this.listing;
    for (let index = 0; index < objects.length; index++) {
      const object = objects[index] as ListedObject;
      if (!this.verified.has(index)) {
        throw new Error(`internal: ${JSON.stringify(object.key)} is in no manifest: not recorded`);
      }
      const digest = this.verified.digestOf(index, object);
      // The entry as it was held: `digest` left out, not undefined (the manifest's bytes).
      yield digest === undefined
        ? { path: object.relativePath, bytes: object.bytes }
        : { path: object.relativePath, bytes: object.bytes, digest };
    }
  }

  /** Sum of the files' sizes. */
  totalBytes(): number {
    let sum = 0;
    for (const object of this.listing.objects) sum += object.bytes;
    return sum;
  }
}

/**
 * The objects of `next` (a new listing of the folder) that `previous` (the failed attempt's
 * listing) holds written and verified with the same key, size and ETag: a record for `next`
 * holding just those (their files still in the old attempt's directory: moveKept).
 */
export function keptFor(
  previous: ResolvedPrefix,
  verified: VerifiedObjects,
  next: ResolvedPrefix,
): VerifiedObjects {
  const kept = new VerifiedObjects(next.objects.length);
  // Another prefix (never: the same dataset's URI) would put the same key at another path.
  if (previous.bucket !== next.bucket || previous.prefix !== next.prefix) return kept;
  if (verified.length !== previous.objects.length || verified.count === 0) return kept;
  let i = 0;
  for (let j = 0; j < next.objects.length && i < previous.objects.length; j++) {
    const object = next.objects[j] as ListedObject;
    // Past the keys of the old listing that the new one lacks (deleted meanwhile).
    let order = compareUtf8((previous.objects[i] as ListedObject).key, object.key);
    while (order < 0 && ++i < previous.objects.length) {
      order = compareUtf8((previous.objects[i] as ListedObject).key, object.key);
    }
    if (i >= previous.objects.length) break;
    // A key new in this listing (order > 0): fetched.
    if (order !== 0) continue;
    const before = previous.objects[i] as ListedObject;
    const method = verified.methodOf(i);
    if (
      verified.has(i) &&
      method !== undefined &&
      sameObject(before, object) &&
      before.relativePath === object.relativePath
    ) {
      // Nothing of the old listing is held by the new record: its digest is made from the new
      // listing's ETag (the same), or is the old record's own string.
      kept.record(j, object, verified.digestOf(i, before), method);
    }
    i++;
  }
  return kept;
}

/** The same object in two listings: key, size and a real ETag (no versionId in a listing). */
function sameObject(before: ListedObject, now: ListedObject): boolean {
  return (
    before.key === now.key &&
    before.bytes === now.bytes &&
    before.etag !== "" &&
    before.etag === now.etag
  );
}

/** What the next attempt kept, for the event that says so. */
export function keptMessage(kept: VerifiedObjects, listing: ResolvedPrefix): string {
  const left = listing.objects.length - kept.count;
  const objects = (n: number) => (n === 1 ? "1 object" : `${n} objects`);
  const rest =
    left === 0
      ? "nothing else to fetch"
      : `fetching the other ${objects(left)} (${formatBytes(listing.bytes - kept.bytes)})`;
  return `kept ${objects(kept.count)} (${formatBytes(kept.bytes)}) of the previous attempt, verified and unchanged in the new listing; ${rest}`;
}

export interface MoveKeptOptions {
  readonly resolution: ResolvedPrefix;
  /** keptFor's record: emptied of the objects whose files are not found (fetched instead). */
  readonly kept: VerifiedObjects;
  /** The old attempt's data directory. */
  readonly from: string;
  /** The new attempt's data directory (existing). */
  readonly destination: string;
  readonly signal?: AbortSignal | undefined;
  /** One object in place (its bytes), for progress. */
  readonly onKept?: ((bytes: number) => void) | undefined;
  readonly writes?: WriteMode | undefined;
}

/**
 * Moves the kept objects' files into the new attempt's directory, by rename, before any
 * object of the new listing is fetched (so an OBJECT_CHANGED of the new attempt always meets
 * a record whose files are all in place). One at a time with synchronous calls while they are
 * fast, several at once through the thread pool once they turn out slow (network storage), as
 * download-prefix.ts writes files.
 */
export async function moveKept(options: MoveKeptOptions): Promise<void> {
  const { kept, resolution, from, destination, signal } = options;
  if (kept.count === 0) return;
  syncStorageCallsAhead();
  const creates = SlowCreates.forMode(options.writes);
  const ensureDir = dirMaker(creates, destination);
  const moveOne = async (index: number): Promise<void> => {
    const object = resolution.objects[index] as ListedObject;
    const to = join(destination, object.relativePath);
    await ensureDir(dirname(to));
    const source = join(from, object.relativePath);
    try {
      if (creates.slow) {
        const turn = creates.acquire();
        if (turn !== undefined) await turn;
        try {
          signal?.throwIfAborted();
          await rename(source, to);
        } finally {
          creates.release();
        }
      } else {
        creates.begin();
        try {
          renameSync(source, to);
        } finally {
          creates.end();
          creates.fileDone();
        }
        mainThreadAlive();
      }
    } catch (error) {
      if (signal?.aborted === true && error === signal.reason) throw error;
      // Not there after all (never seen: the old attempt is this process's, private): fetched
      // as any other object instead.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        kept.forget(index, object);
        return;
      }
      throw storageError(error, to);
    }
    options.onKept?.(object.bytes);
  };
  let next = 0;
  let failed = false;
  const mover = async (): Promise<void> => {
    for (let moved = 0; !failed; moved++) {
      signal?.throwIfAborted();
      while (next < kept.length && !kept.has(next)) next++;
      if (next >= kept.length) return;
      const index = next++;
      try {
        await moveOne(index);
      } catch (error) {
        failed = true;
        throw error;
      }
      // Synchronous renames of a large folder: the event loop (timers, the stall clock, a
      // heartbeat, signals) gets a turn now and then.
      if (!creates.slow && moved % 256 === 255) await new Promise((done) => setImmediate(done));
    }
  };
  // One mover runs while renames are synchronous (each call returns before the next mover
  // starts); once slow, the others keep up to the pool's share of renames in flight.
  const results = await Promise.allSettled(Array.from({ length: 16 }, mover));
  const rejected = results.find((result) => result.status === "rejected");
  if (rejected !== undefined) {
    const reason = (rejected as PromiseRejectedResult).reason;
    throw reason instanceof DsfetchError || signal?.aborted === true
      ? reason
      : storageError(reason, destination);
  }
}
