/**
 * ListObjectsV2, one page at a time, over the same signed connections as the downloads
 * (object-get.ts). This replaced the AWS SDK's listing: for 20,000 objects its XML parser
 * allocated 120 MiB (15% of everything the fetch allocated) and loading the SDK cost
 * ~35 MiB of memory before the first byte; the fields a listing gives us are four.
 * Keys are asked for URL-encoded (`encoding-type=url`), so that keys holding characters XML
 * 1.0 cannot carry still arrive intact (botocore does the same).
 * API: https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
 *
 * A store that knows only ListObjects (V1) ignores `list-type=2` and answers V1 documents
 * (`<Marker>`, `<NextMarker>`, no `<KeyCount>` nor continuation tokens): such a listing goes
 * on by `marker` (API_ListObjects.html). Interop review, 2026-12-06: it was taken for a V2
 * listing truncated without a token, retried for ~20 s, then failed.
 *
 * The token of a page (ListPage.nextToken, opaque to list-tree.ts and resolve.ts) is the
 * store's continuation token as it gave it, or, where a page needs more to go on with, a
 * token of our own (Cursor): a V1 marker, or the pages of a run of empty truncated pages, so
 * that a store whose tokens go round over empty pages (A, B, A) is refused instead of listed
 * for ever. A store's own token never starts with U+0000 (XML 1.0 cannot carry it).
 */
import { createHash } from "node:crypto";
import { normalizeEtag } from "../config/dataset.ts";
import { compareUtf8 } from "./list-tree.ts";
import type { ObjectGetter } from "./object-get.ts";

export interface ListedEntry {
  readonly key: string;
  readonly size: number;
  /** As listed (quotes and case not normalised). */
  readonly etag: string;
  /** As listed (ISO 8601), for an entry without an ETag only. */
  readonly lastModified?: string;
}

export interface ListPage {
  readonly entries: ListedEntry[];
  /** With a delimiter: the "directories" rolled up (CommonPrefixes), in the store's order. */
  readonly prefixes: string[];
  /** Where the next page starts; undefined on the last page. */
  readonly nextToken: string | undefined;
}

/** A page holds at most 1,000 keys of at most 1 KiB: far below this. */
const MAX_PAGE_BYTES = 64 * 1024 * 1024;

export async function listObjectsPage(
  getter: ObjectGetter,
  request: {
    readonly bucket: string;
    readonly prefix: string;
    readonly continuationToken?: string | undefined;
    /** Roll keys up to their first "/" after the prefix (CommonPrefixes). */
    readonly delimiter?: "/" | undefined;
    /** Keys after this one only (ignored by the store once a continuation token is given). */
    readonly startAfter?: string | undefined;
    readonly signal?: AbortSignal | undefined;
  },
): Promise<ListPage> {
  const cursor =
    request.continuationToken === undefined ? undefined : cursorOf(request.continuationToken);
  // A V1 store's next page is asked for as V1 asks (no list-type: a store that does know V2,
  // asked so, would ignore the marker and list from the start again).
  const query: Record<string, string> =
    cursor?.v1 === true
      ? { prefix: request.prefix, "encoding-type": "url", marker: cursor.value }
      : { "list-type": "2", prefix: request.prefix, "encoding-type": "url" };
  if (cursor !== undefined && !cursor.v1) query["continuation-token"] = cursor.value;
  if (request.delimiter !== undefined) query.delimiter = request.delimiter;
  if (request.startAfter !== undefined && cursor?.v1 !== true) {
    query["start-after"] = request.startAfter;
  }
  const response = await getter.get({
    bucket: request.bucket,
    key: "",
    query,
    signal: request.signal,
  });
  const chunks: Buffer[] = [];
  let bytes = 0;
  await response.readBody((chunk) => {
    bytes += chunk.length;
    if (bytes > MAX_PAGE_BYTES) throw malformed("a listing page is larger than 64 MiB");
    chunks.push(Buffer.from(chunk));
  });
  return parseListPage(Buffer.concat(chunks, bytes).toString("utf8"), request.continuationToken);
}

/**
 * Parses a ListBucketResult document (V2, or V1 from a store that knows no other); Pure.
 * `previousToken`: the token the page was asked for with (ListPage.nextToken of the page
 * before), if any.
 */
export function parseListPage(xml: string, previousToken?: string): ListPage {
  if (!/<ListBucketResult[\s>]/.test(xml)) {
    throw malformed(`the answer is not a ListBucketResult: ${JSON.stringify(xml.slice(0, 80))}`);
  }
  const urlEncoded = (textOf(xml, "EncodingType") ?? "").toLowerCase() === "url";
  const entries: ListedEntry[] = [];
  for (const match of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const block = match[1] ?? "";
    const rawKey = textOf(block, "Key");
    const size = textOf(block, "Size");
    if (rawKey === undefined) throw malformed("an entry without a Key");
    if (size === undefined || !/^\d+$/.test(size)) {
      throw malformed(`the entry ${JSON.stringify(rawKey)} has no valid Size`);
    }
    const etag = textOf(block, "ETag");
    // What an entry keeps is copied out of the page (own): a decoded key is a new string.
    const key = urlEncoded ? decodeKey(rawKey) : own(rawKey);
    entries.push(
      // No ETag, or an empty one (`<ETag></ETag>`, `<ETag>""</ETag>`: review, 2026-12-06).
      normalizeEtag(etag ?? "") === ""
        ? // Without an ETag, the only sign of a replacement of the same size (resolve.ts).
          {
            key,
            size: Number(size),
            etag: "",
            lastModified: own(textOf(block, "LastModified") ?? ""),
          }
        : { key, size: Number(size), etag: own(etag ?? "") },
    );
  }
  const prefixes: string[] = [];
  for (const match of xml.matchAll(/<CommonPrefixes>([\s\S]*?)<\/CommonPrefixes>/g)) {
    const rawPrefix = textOf(match[1] ?? "", "Prefix");
    if (rawPrefix === undefined) throw malformed("a CommonPrefixes entry without a Prefix");
    // Held until their directory is listed (list-tree.ts): copied out of the page too.
    prefixes.push(urlEncoded ? decodeKey(rawPrefix) : own(rawPrefix));
  }
  // A document cut short (a body without a length ends at a clean close) must not pass
  // for a shorter listing.
  if (!/<\/ListBucketResult>\s*$/.test(xml)) {
    throw malformed("the listing document is incomplete (no </ListBucketResult>)");
  }
  const keyCount = textOf(xml, "KeyCount");
  // With a delimiter, AWS and MinIO count the CommonPrefixes in KeyCount too.
  if (
    keyCount !== undefined &&
    Number(keyCount) !== entries.length &&
    Number(keyCount) !== entries.length + prefixes.length
  ) {
    throw malformed(`KeyCount says ${keyCount} keys but the page lists ${entries.length}`);
  }
  const truncated = (textOf(xml, "IsTruncated") ?? "false").toLowerCase() === "true";
  if (!truncated) return { entries, prefixes, nextToken: undefined };
  const previous = previousToken === undefined ? undefined : cursorOf(previousToken);
  const v1 =
    previous?.v1 === true ||
    ((hasElement(xml, "Marker") || hasElement(xml, "NextMarker")) &&
      !["KeyCount", "ContinuationToken", "NextContinuationToken", "StartAfter"].some((name) =>
        hasElement(xml, name),
      ));
  // Without these checks a store that misbehaves would end the listing early (a dataset
  // silently missing objects) or loop on the same page forever.
  let next: string;
  if (v1) {
    // V1: NextMarker (AWS gives it with a delimiter only), else the last key of the page; with
    // a delimiter the last of its keys and directories (each stands for all its keys).
    const nextMarker = textOf(xml, "NextMarker");
    const last = [entries.at(-1)?.key, prefixes.at(-1)]
      .filter((one) => one !== undefined)
      .sort(compareUtf8)
      .at(-1);
    const marker =
      nextMarker !== undefined && nextMarker !== ""
        ? urlEncoded
          ? decodeKey(nextMarker)
          : nextMarker
        : last;
    if (marker === undefined) {
      throw malformed(
        "the listing (ListObjects V1) is truncated but gives no NextMarker, nor a key to go on after",
      );
    }
    if (marker === previous?.value) {
      throw malformed(
        `the listing (ListObjects V1) goes on after ${JSON.stringify(marker)} a second time (the store ignores "marker")`,
      );
    }
    next = marker;
  } else {
    const nextToken = textOf(xml, "NextContinuationToken");
    if (nextToken === undefined || nextToken === "") {
      throw malformed("the listing is truncated but gives no NextContinuationToken");
    }
    if (nextToken.startsWith(OWN_TOKEN)) {
      throw malformed(`the continuation token ${JSON.stringify(nextToken)} is not valid XML text`);
    }
    if (nextToken === previous?.value) {
      throw malformed("the listing gave the same continuation token twice");
    }
    next = nextToken;
  }
  // Empty truncated pages (AWS gives some, rarely) whose tokens come round again (A, B, A) would
  // be listed for ever: the tokens of the run of empty pages go on in the next one's.
  let emptyRun: string[] = [];
  if (entries.length === 0 && prefixes.length === 0) {
    emptyRun = [...(previous?.emptyRun ?? []), digestOf(previous?.value ?? "")];
    if (emptyRun.includes(digestOf(next))) {
      throw malformed(
        `the listing goes round in a circle: after ${emptyRun.length} empty page${emptyRun.length === 1 ? "" : "s"}, the store gives a continuation it gave before (${JSON.stringify(next)})`,
      );
    }
    if (emptyRun.length > MAX_EMPTY_PAGES) {
      throw malformed(
        `the store gave ${emptyRun.length} empty pages in a row, each saying there is more: a listing that does not end`,
      );
    }
  }
  return { entries, prefixes, nextToken: tokenOf({ v1, value: next, emptyRun }) };
}

/**
 * Empty truncated pages in a row past which a listing is refused: AWS may answer a few (keys
 * deleted or expiring under the prefix), never a thousand in a row.
 */
const MAX_EMPTY_PAGES = 1000;

/** The start of a token of our own (Cursor), never of a store's. */
const OWN_TOKEN = "\u0000dsfetch:";

/** Where a listing goes on (ListPage.nextToken). */
interface Cursor {
  /** A V1 listing: `value` is the marker; else the store's continuation token. */
  readonly v1: boolean;
  readonly value: string;
  /** Digests of the tokens of the empty truncated pages just before (empty when none). */
  readonly emptyRun: readonly string[];
}

/** The store's token as it gave it, when that is all there is to say. */
function tokenOf(cursor: Cursor): string {
  if (!cursor.v1 && cursor.emptyRun.length === 0) return cursor.value;
  return OWN_TOKEN + JSON.stringify([cursor.v1 ? 1 : 2, cursor.value, cursor.emptyRun]);
}

function cursorOf(token: string): Cursor {
  if (!token.startsWith(OWN_TOKEN)) return { v1: false, value: token, emptyRun: [] };
  const [version, value, emptyRun] = JSON.parse(token.slice(OWN_TOKEN.length)) as [
    number,
    string,
    string[],
  ];
  return { v1: version === 1, value, emptyRun };
}

function digestOf(token: string): string {
  return createHash("sha256").update(token).digest("base64").slice(0, 22);
}

/** Whether the document has a <name> element (empty or not) at any level. */
function hasElement(xml: string, name: string): boolean {
  return new RegExp(`<${name}(>|/>|\\s)`).test(xml);
}

function malformed(what: string): Error {
  const error = new Error(`malformed listing from the store: ${what}`);
  error.name = "MalformedListing";
  return error;
}

/**
 * A copy of `text` that holds nothing of the string it was taken from. V8 makes a substring of
 * 13 characters or more (a regexp's match, slice()) a view into its parent: a key kept from a
 * page answered without `<EncodingType>url</EncodingType>` (a store that ignores the
 * parameter, a proxy that drops it) kept that whole page alive, ~330 B of XML per entry:
 * ~470 B of heap per entry kept instead of ~150, measured on 50 pages of 1,000 entries; and
 * the LastModified of an entry without an ETag did so whatever the encoding, ~400 B (memory
 * review of folders, 2026-12-06; test/fetch/list-page-memory.test.ts). JSON's round trip
 * copies every UTF-16 unit, a lone surrogate (`&#xD800;`) included: a UTF-8 Buffer would make
 * it U+FFFD, another key. ~150 ns a string.
 */
function own(text: string): string {
  return JSON.parse(JSON.stringify(text)) as string;
}

/** The text of the first <name> element, XML entities decoded. */
function textOf(xml: string, name: string): string | undefined {
  const match = elementPattern(name).exec(xml);
  return match === null ? undefined : decodeEntities(match[1] ?? "");
}

/**
 * One regular expression per element name, made once: textOf runs 3 times per listed object
 * (1,280,000 objects: 3.8 M calls), and a RegExp made at each call cost more than its match.
 */
const ELEMENT_PATTERNS = new Map<string, RegExp>();
function elementPattern(name: string): RegExp {
  let pattern = ELEMENT_PATTERNS.get(name);
  if (pattern === undefined) {
    pattern = new RegExp(`<${name}>([^<]*)</${name}>`);
    ELEMENT_PATTERNS.set(name, pattern);
  }
  return pattern;
}

const NAMED_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

function decodeEntities(text: string): string {
  if (!text.includes("&")) return text;
  // Every ETag of a listing is `&quot;…&quot;`: replaced without a callback per entity when
  // that is the only kind there is.
  const quotes = text.replaceAll("&quot;", '"');
  if (!quotes.includes("&")) return quotes;
  return text.replace(/&(#x[0-9a-fA-F]{1,8}|#\d{1,8}|[a-z]+);/g, (whole, entity: string) => {
    if (entity.startsWith("#")) {
      const code = entity.startsWith("#x")
        ? Number.parseInt(entity.slice(2), 16)
        : Number.parseInt(entity.slice(1), 10);
      if (code > 0x10ffff) throw malformed(`invalid XML character reference ${whole}`);
      return String.fromCodePoint(code);
    }
    const named = NAMED_ENTITIES[entity];
    if (named === undefined) throw malformed(`unknown XML entity ${whole}`);
    return named;
  });
}

/** encoding-type=url encodes keys as form values: "+" is a space, "%2B" a plus. */
function decodeKey(encoded: string): string {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, " "));
  } catch {
    throw malformed(`the key ${JSON.stringify(encoded)} is not valid URL encoding`);
  }
}
