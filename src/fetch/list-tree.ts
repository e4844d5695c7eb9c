/**
 * Listing a folder with several requests at once where it has "directories". ListObjectsV2
 * gives 1,000 keys per request, one request after the other: a folder of 1,280,000 images
 * (ImageNet's train set) is 1,280 round trips, 1-4 minutes on S3 before the first byte of a
 * cold fetch, and again at every job start that checks a staged copy (its listing against the
 * manifest). s5cmd and the AWS CLI list one page after the other too.
 *
 * How: the first page of one listing shows whether the folder has directories (if not, or if
 * it is the only page, the listing goes on as before); then one listing with delimiter "/"
 * gives the folder's own keys and its directories (while there are fewer than `concurrency`
 * of them, each is looked into the same way, down to MAX_DEPTH levels); then each directory is listed by its own prefix, `concurrency` at a
 * time. Once directories turn out small (fewer than SMALL_DIRECTORY keys on average: a
 * request each would be many more requests than one listing), the rest of the folder is one
 * listing from the first directory not started (`start-after`). A flat folder is listed
 * exactly as before.
 *
 * Why by prefix and not in ranges of directories (`start-after` each): MinIO answers a
 * listing that starts somewhere new by walking the whole prefix in the background to cache
 * it; 16 ranges over a folder of 20,000 objects kept it busy for 5 s of CPU after the listing
 * had ended, and a cold fetch beside it took 17 s instead of 13-15 s (measured here).
 *
 * The result is in the order one listing gives (UTF-8 byte order: S3, MinIO, Ceph), so the
 * listing digest of a staged folder stays what it was. This relies on that order: every page
 * is checked to be in it, and where one is not (or a store ignores `start-after`), the folder
 * is listed again with one request after the other (ListingOrderUnknown).
 */

import { mapLimit } from "../util/map-limit.ts";
import type { ListedEntry, ListPage } from "./list-objects.ts";

export type PageRequest = {
  readonly prefix: string;
  /** Aborted once the attempt it belongs to failed (its other requests are not waited for). */
  readonly signal?: AbortSignal | undefined;
  readonly delimiter?: "/" | undefined;
  readonly startAfter?: string | undefined;
  readonly continuationToken?: string | undefined;
};

export type PageFetcher = (request: PageRequest) => Promise<ListPage>;

/** Directories looked into while there are few (each level one request per directory). */
const MAX_DEPTH = 3;

/**
 * Keys per directory under which directories are not listed one by one (a page holds 1,000:
 * 200 is 5 requests where one listing makes 1, 16 at a time).
 */
const SMALL_DIRECTORY = 200;

/**
 * Directories found by the delimiter listings (over every level) past which the folder is
 * listed the plain way. A directory per sample (a million of them) would take the delimiter
 * listing of every directory and then their keys: up to twice the requests of one listing,
 * one after the other. Capped, the delimiter listings stop after ~10 pages. Directories of
 * many keys (15 shards of 100,000 keys, train/ and val/) are not counted against it: their
 * own keys are listed once, several directories at a time. A folder of more than 10,000
 * directories (ImageNet-21k's 21,841 classes) is listed one page after the other, as before.
 */
export const MAX_DIRECTORIES = 10_000;

/** Raised inside: the store's order is not UTF-8 byte order, or it ignored `start-after`. */
class ListingOrderUnknown extends Error {}

/**
 * Every key under `prefix`, converted as its page arrives (undefined drops it), in the order
 * of one listing. `converter` gives a fresh converter for each attempt (a listing started
 * again one page after the other must not find the keys of the first attempt seen).
 */
export async function listTree<T extends { readonly key: string }>(
  prefix: string,
  fetchPage: PageFetcher,
  converter: () => (entry: ListedEntry) => T | undefined,
  options: {
    readonly concurrency: number;
    /**
     * Whether an error of the listing by several requests is worth one plain listing: a
     * refusal of a directory's own prefix (an IAM policy on `s3:prefix`), a store that does
     * not take `delimiter` or `start-after`. Not an interrupt, nor a store that stayed
     * unreachable.
     */
    readonly plainAfter?: ((error: unknown) => boolean) | undefined;
  },
): Promise<T[]> {
  if (options.concurrency <= 1) return listPages(prefix, fetchPage, converter());
  // The first page of one listing decides: a folder of one page, or whose first page has no
  // directory, goes on as one listing (a flat folder pays nothing: MinIO's delimiter listing
  // of 20,000 keys took 1.8-2.2 s against 1.2-1.35 s); else the directories are listed at
  // once, and that page is one request more.
  const convert = converter();
  const first = await fetchPage({ prefix });
  const nested = first.entries.some((entry) => entry.key.indexOf("/", prefix.length) !== -1);
  if (first.nextToken === undefined || !nested) {
    return listPages(prefix, fetchPage, convert, first);
  }
  try {
    return await listInRanges(prefix, fetchPage, converter(), options.concurrency);
  } catch (error) {
    if (!(error instanceof ListingOrderUnknown) && options.plainAfter?.(error) !== true) {
      throw error;
    }
  }
  return listPages(prefix, fetchPage, converter(), first);
}

/** One listing, page after page (no order assumed), from its first page when given. */
async function listPages<T>(
  prefix: string,
  fetchPage: PageFetcher,
  convert: (entry: ListedEntry) => T | undefined,
  first?: ListPage,
): Promise<T[]> {
  const out: T[] = [];
  let page = first ?? (await fetchPage({ prefix }));
  for (;;) {
    for (const entry of page.entries) {
      const converted = convert(entry);
      if (converted !== undefined) out.push(converted);
    }
    if (page.nextToken === undefined) return out;
    page = await fetchPage({ prefix, continuationToken: page.nextToken });
  }
}

async function listInRanges<T extends { readonly key: string }>(
  prefix: string,
  fetchAnyPage: PageFetcher,
  convert: (entry: ListedEntry) => T | undefined,
  concurrency: number,
): Promise<T[]> {
  // Once one request failed (or found the order unknown), the others ask for no more pages
  // and those in flight are aborted (their retries too): the error, or a plain listing, then
  // goes on without them.
  let failed: unknown;
  const attempt = new AbortController();
  const fail = (error: unknown): void => {
    if (failed !== undefined) return;
    failed = error;
    attempt.abort(error);
  };
  const fetchPage: PageFetcher = async (request) => {
    if (failed !== undefined) throw failed;
    try {
      return await fetchAnyPage({ ...request, signal: attempt.signal });
    } catch (error) {
      fail(error);
      throw error;
    }
  };
  const stopOn = <R>(work: Promise<R>): Promise<R> =>
    work.catch((error: unknown) => {
      fail(error);
      throw failed;
    });
  // Keys found by the delimiter listings (not under a directory left to the ranges).
  const direct: T[] = [];
  const directKeys = new Set<string>();
  let directories = [prefix];
  let levels = 0;
  const found = { directories: 0 };
  do {
    const looked = await mapLimit(directories, concurrency, (directory) =>
      stopOn(
        delimited(
          directory,
          fetchPage,
          (entry) => {
            directKeys.add(entry.key);
            const converted = convert(entry);
            if (converted !== undefined) direct.push(converted);
          },
          found,
        ),
      ),
    );
    directories = looked.flat();
    levels += 1;
  } while (directories.length > 0 && directories.length < concurrency && levels < MAX_DEPTH);
  if (levels > 1) direct.sort((a, b) => compareUtf8(a.key, b.key));
  if (directories.length === 0) return direct;

  directories.sort(compareUtf8);
  // Each directory by its own prefix, `concurrency` at a time, in order; once directories
  // turn out small (a request per directory would be many more than one listing's), the rest
  // of the folder in one listing from the first directory not started.
  const byDirectory: T[][] = [];
  let next = 0;
  let listed = 0;
  let keys = 0;
  let restFrom: number | undefined;
  const worker = async (): Promise<void> => {
    while (next < directories.length && restFrom === undefined) {
      if (listed >= concurrency && keys / listed < SMALL_DIRECTORY) {
        restFrom = next;
        return;
      }
      const index = next++;
      const found = await stopOn(inDirectory(directories[index] as string, fetchPage, convert));
      byDirectory[index] = found.converted;
      listed += 1;
      keys += found.keys;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, directories.length) }, worker));
  const listedInOrder = byDirectory.flat();
  if (restFrom !== undefined) {
    const from = directories[restFrom] as string;
    // Not push(...rest): a million arguments overflow the stack.
    for (const item of await listRange(prefix, from, directKeys, fetchPage, convert)) {
      listedInOrder.push(item);
    }
  }
  return mergeByKey(direct, listedInOrder);
}

/** Every key under `directory` (its own prefix), checked to be in order. */
async function inDirectory<T>(
  directory: string,
  fetchPage: PageFetcher,
  convert: (entry: ListedEntry) => T | undefined,
): Promise<{ converted: T[]; keys: number }> {
  const converted: T[] = [];
  let keys = 0;
  let last: string | undefined;
  let token: string | undefined;
  do {
    const page = await fetchPage({ prefix: directory, continuationToken: token });
    for (const entry of page.entries) {
      if (!entry.key.startsWith(directory)) throw new ListingOrderUnknown();
      inOrder(last, entry.key);
      last = entry.key;
      keys += 1;
      const item = convert(entry);
      if (item !== undefined) converted.push(item);
    }
    token = page.nextToken;
  } while (token !== undefined);
  return { converted, keys };
}

/**
 * A directory's own keys (to `onEntry`, as they come) and its subdirectories, every page,
 * checked to be in order.
 */
async function delimited(
  directory: string,
  fetchPage: PageFetcher,
  onEntry: (entry: ListedEntry) => void,
  found: { directories: number },
): Promise<string[]> {
  const prefixes: string[] = [];
  let last: string | undefined;
  let token: string | undefined;
  do {
    const page = await fetchPage({ prefix: directory, delimiter: "/", continuationToken: token });
    for (const entry of page.entries) {
      // A key of a delimited listing has no "/" past its directory: one that has is a store
      // answering otherwise (or a repeated entry), left to the plain listing's checks.
      const { key } = entry;
      if (!key.startsWith(directory) || key.indexOf("/", directory.length) !== -1) {
        throw new ListingOrderUnknown();
      }
      inOrder(last, key);
      last = key;
      onEntry(entry);
    }
    for (const sub of page.prefixes) {
      // A store's CommonPrefixes are directories one level under this one, in order (one
      // two levels down would leave the keys beside it unlisted).
      if (
        !sub.startsWith(directory) ||
        sub.length <= directory.length ||
        sub.indexOf("/", directory.length) !== sub.length - 1
      ) {
        throw new ListingOrderUnknown();
      }
      inOrder(prefixes.at(-1), sub);
      prefixes.push(sub);
      // More directories than are worth listing one by one (MAX_DIRECTORIES): one listing.
      if (++found.directories > MAX_DIRECTORIES) throw new ListingOrderUnknown();
    }
    token = page.nextToken;
  } while (token !== undefined);
  return prefixes;
}

/**
 * The keys from directory `from` to the end of the folder, without those the delimiter
 * listings gave already.
 */
async function listRange<T>(
  prefix: string,
  from: string,
  directKeys: ReadonlySet<string>,
  fetchPage: PageFetcher,
  convert: (entry: ListedEntry) => T | undefined,
): Promise<T[]> {
  const out: T[] = [];
  // Just before `from` (which ends with "/": "dir/" > "dir"): a key equal to `from` (a
  // directory marker) is listed too.
  const startAfter = from.slice(0, -1);
  let last: string | undefined;
  let token: string | undefined;
  do {
    const page = await fetchPage(
      token === undefined ? { prefix, startAfter } : { prefix, continuationToken: token },
    );
    for (const entry of page.entries) {
      const { key } = entry;
      // A store that ignores start-after lists from the start.
      if (last === undefined && compareUtf8(key, startAfter) <= 0) throw new ListingOrderUnknown();
      if (!key.startsWith(prefix)) throw new ListingOrderUnknown();
      inOrder(last, key);
      last = key;
      if (compareUtf8(key, from) < 0 || directKeys.has(key)) continue;
      const converted = convert(entry);
      if (converted !== undefined) out.push(converted);
    }
    token = page.nextToken;
  } while (token !== undefined);
  return out;
}

function inOrder(previous: string | undefined, key: string): void {
  if (previous !== undefined && compareUtf8(previous, key) >= 0) throw new ListingOrderUnknown();
}

/** Two lists in UTF-8 order merged into one. */
function mergeByKey<T extends { readonly key: string }>(a: T[], b: T[]): T[] {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: T[] = new Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] as T;
    const y = b[j] as T;
    if (compareUtf8(x.key, y.key) <= 0) {
      out[k++] = x;
      i++;
    } else {
      out[k++] = y;
      j++;
    }
  }
  while (i < a.length) out[k++] = a[i++] as T;
  while (j < b.length) out[k++] = b[j++] as T;
  return out;
}

/**
 * Compares as UTF-8 bytes do (S3's order), which is code point order: JavaScript's `<`
 * compares UTF-16 code units, which puts characters above U+FFFF (surrogate pairs, 0xD800-
 * 0xDFFF) before U+E000-U+FFFF.
 */
export function compareUtf8(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}
