// `dsfetch fetch` against S3-compatible stores that answer otherwise than AWS or MinIO (interop
// review, 2026-12-06), scripted by a small HTTP front in this file: it signs each request
// again for MinIO (so it may change the query: a V1-only store), forwards it, and changes the
// answer (chunked framing, a refusal of ChecksumMode, a 412 to part HEADs, SlowDown with
// Retry-After). A store of its own answers what MinIO cannot be made to (tokens going round).
// - ChecksumMode refused on GET (Backblaze B2: 400 InvalidArgument; or 501): a folder's small
//   objects are asked for again without it, and the store's later GETs go without it;
// - ranged answers with Transfer-Encoding: chunked (no Content-Length) are taken;
// - a V1-only store's listing goes on by marker; a malformed listing that comes back the same
//   is not retried six times; tokens going round over empty pages are refused;
// - Retry-After is waited for;
// - a 412 to a part HEAD with If-Match (moto) is asked again without it.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseListPage } from "../../src/fetch/list-objects.ts";
import { ObjectGetter, S3HttpError } from "../../src/fetch/object-get.ts";
import { fetchSpan } from "../../src/fetch/range-fetch.ts";
import { MAX_RETRY_AFTER_MS, retryAfterMs, withRetry } from "../../src/fetch/retry.ts";
import { classifyS3Error, type S3ErrorContext } from "../../src/fetch/s3-errors.ts";
import { encodeQuery, SigV4Signer } from "../../src/fetch/sigv4.ts";
import { type CliResult, runCli } from "../harness/cli.ts";
import { createBucket, putMultipart, putObject, s3Info, testEnv } from "../harness/s3.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const TEAM = "ml";

interface StagedJson {
  name: string;
  path: string;
  bytes: number;
  retries: number;
  verification?: Record<string, number>;
  error?: { code: string; message: string; hint?: string };
}

/** A request as the front saw it. */
interface Seen {
  readonly method: string;
  /** Path as sent (encoded), without the query. */
  readonly path: string;
  readonly query: Record<string, string>;
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** What the front did with it: "forwarded", or why it answered itself. */
  outcome: string;
}

interface Answer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer;
}

interface FrontRules {
  /** Answers the request itself (the store never sees it), or undefined to forward it. */
  answer?(request: Seen): Answer | undefined;
  /** Changes the query (and drops headers) of a request before it is signed and forwarded. */
  forward?(request: Seen, query: Record<string, string>, headers: Record<string, string>): void;
  /** Sends the store's answer with Transfer-Encoding: chunked instead of Content-Length. */
  chunked?(request: Seen, status: number): boolean;
  /** Changes the headers of the store's answer. */
  headers?(request: Seen, head: Record<string, string | string[]>): void;
  /**
   * Sends the store's answer framed by the connection's close (no Content-Length, no chunks)
   * and closes it after this many bytes of the body; undefined: as the other rules say.
   */
  cutClosing?(request: Seen, status: number): number | undefined;
}

interface Front {
  readonly endpoint: string;
  readonly requests: Seen[];
  close(): Promise<void>;
}

const fronts: Front[] = [];
let bucket: string;
let scratch: string;

/** Request headers signed again and forwarded to the store; the rest are the front's. */
const FORWARDED = ["range", "if-match", "if-none-match", "x-amz-checksum-mode"];

/** An HTTP front before MinIO that signs every request again and applies `rules`. */
async function startFront(rules: FrontRules): Promise<Front> {
  const info = s3Info();
  const upstream = new URL(info.endpoint);
  const signer = new SigV4Signer(info.region);
  const requests: Seen[] = [];
  const server = createServer((incoming, out) => {
    const url = new URL(incoming.url ?? "/", "http://front");
    const seen: Seen = {
      method: incoming.method ?? "GET",
      path: (incoming.url ?? "/").split("?")[0] as string,
      query: Object.fromEntries(url.searchParams),
      headers: { ...incoming.headers } as Record<string, string | undefined>,
      outcome: "forwarded",
    };
    requests.push(seen);
    const own = rules.answer?.(seen);
    if (own !== undefined) {
      seen.outcome = `answered ${own.status}`;
      const body = seen.method === "HEAD" ? Buffer.alloc(0) : Buffer.from(own.body ?? "");
      out.writeHead(own.status, { "content-length": String(body.length), ...own.headers });
      out.end(body);
      return;
    }
    const query = { ...seen.query };
    const headers: Record<string, string> = {};
    for (const name of FORWARDED) {
      const value = seen.headers[name];
      if (value !== undefined) headers[name] = value;
    }
    rules.forward?.(seen, query, headers);
    const method = seen.method === "HEAD" ? "HEAD" : "GET";
    const signed = signer.sign(
      { method, host: upstream.host, path: seen.path, query, headers },
      { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey },
    );
    const text = encodeQuery(query);
    const onward = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method,
        path: text === "" ? seen.path : `${seen.path}?${text}`,
        headers: signed,
      },
      (answer: IncomingMessage) => {
        const status = answer.statusCode ?? 502;
        const chunked = rules.chunked?.(seen, status) === true && method === "GET";
        const head: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (value === undefined || name === "connection" || name === "transfer-encoding")
            continue;
          if (chunked && name === "content-length") continue;
          head[name] = value;
        }
        if (chunked) {
          seen.outcome = "forwarded chunked";
          head["transfer-encoding"] = "chunked";
        }
        rules.headers?.(seen, head);
        const cutAt = method === "GET" ? rules.cutClosing?.(seen, status) : undefined;
        if (cutAt !== undefined) {
          // Written on the socket itself: node:http would frame a body without a length in
          // chunks. The body then ends where the connection does.
          seen.outcome = `cut at ${cutAt}`;
          const lines = [`HTTP/1.1 ${status} ${answer.statusMessage ?? ""}`, "connection: close"];
          for (const [name, value] of Object.entries(head)) {
            if (name === "content-length") continue;
            for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${one}`);
          }
          const socket = incoming.socket;
          socket.write(`${lines.join("\r\n")}\r\n\r\n`);
          let sent = 0;
          answer.on("data", (piece: Buffer) => {
            const take = Math.max(0, Math.min(piece.length, cutAt - sent));
            if (take > 0) socket.write(piece.subarray(0, take));
            sent += take;
            if (sent >= cutAt) socket.end();
          });
          answer.on("end", () => socket.end());
          return;
        }
        out.writeHead(status, head);
        // node:http writes each piece as one chunk: several chunks per body.
        answer.on("data", (piece: Buffer) => out.write(piece));
        answer.on("end", () => out.end());
      },
    );
    onward.on("error", () => out.destroy());
    onward.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const front: Front = {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => closeServer(server),
  };
  fronts.push(front);
  return front;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

async function fetchVia(
  endpoint: string,
  datasets: unknown,
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<CliResult & { storage: string; staged: StagedJson | undefined; ms: number }> {
  const storage = await mkdtemp(join(scratch, "storage-"));
  const started = performance.now();
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", TEAM, "--json"],
    {
      env: { ...testEnv(), AWS_ENDPOINT_URL: endpoint, ...env },
      stdin: JSON.stringify(datasets),
      timeoutMs,
    },
  );
  const ms = performance.now() - started;
  let staged: StagedJson | undefined;
  try {
    staged = (JSON.parse(result.stdout) as { datasets: StagedJson[] }).datasets[0];
  } catch {
    staged = undefined;
  }
  return { ...result, storage, staged, ms };
}

const diagnostics = (result: CliResult) =>
  `exit ${result.code} ${result.signal ?? ""}\n${result.stderr}\n${result.stdout}`;
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const dataset = (storage: string, name: string) => join(storage, TEAM, "data", name);

/** The files of a staged folder, by relative path, as their digests. */
async function stagedFiles(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[path.slice(dir.length + 1)] = sha256(await readFile(path));
  }
  return out;
}

const isObjectGet = (request: Seen) => request.method === "GET" && !isListing(request);
const isListing = (request: Seen) =>
  request.method === "GET" && /^\/[^/]+\/?$/.test(request.path) && "prefix" in request.query;
const s3Error = (status: number, code: string, message: string): Answer => ({
  status,
  headers: { "content-type": "application/xml" },
  body: `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`,
});

// Objects, by key.
const objects = new Map<string, Buffer>();
const put = async (key: string, body: Buffer) => {
  objects.set(key, body);
  await putObject(bucket, key, body);
};
const expectFolder = async (dir: string, prefix: string) => {
  const expected: Record<string, string> = {};
  for (const [key, body] of objects) {
    if (key.startsWith(prefix)) expected[key.slice(prefix.length)] = sha256(body);
  }
  expect(await stagedFiles(dir)).toEqual(expected);
};

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-interop-"));
  bucket = await createBucket("interop");
  // A folder of small objects (one GET each, with ChecksumMode) and one large.
  for (let i = 0; i < 6; i++) await put(`cm/small-${i}.bin`, randomBytes(10 * KiB + i));
  await put("cm/large.bin", randomBytes(2 * MiB + 5));
  await put("cm-kms/kms.bin", randomBytes(3 * KiB));
  await put("cm-kms/plain.bin", randomBytes(4 * KiB));
  // Single objects read in ranges.
  await put("ranged.bin", randomBytes(3 * MiB + 777));
  await put("whole.bin", randomBytes(700 * KiB + 3));
  const multipart = randomBytes(12 * MiB + 12_345);
  objects.set("parts/multi.bin", multipart);
  await putMultipart(bucket, "parts/multi.bin", multipart, 5 * MiB);
  // A folder with directories, listed by a V1-only store two keys a page.
  for (const key of ["a.txt", "b.txt", "d1/x.bin", "d1/y.bin", "d1/z.bin", "d2/p.bin", "e.txt"]) {
    await put(`v1/${key}`, randomBytes(100 + key.length));
  }
}, 120_000);

afterEach(async () => {
  for (const front of fronts.splice(0)) await front.close();
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("a store that refuses ChecksumMode on GET (Backblaze B2, vatesfr/xen-orchestra#8358)", () => {
  for (const [status, code] of [
    [400, "InvalidArgument"],
    [501, "NotImplemented"],
  ] as const) {
    it(`${status} ${code}: the folder is staged; after two refusals its GETs go without the header`, async () => {
      const front = await startFront({
        answer: (request) =>
          request.headers["x-amz-checksum-mode"] === undefined
            ? undefined
            : s3Error(
                status,
                code,
                "Unsupported header &apos;x-amz-checksum-mode&apos; received for this API call.",
              ),
      });
      const result = await fetchVia(front.endpoint, [{ uri: `s3://${bucket}/cm/`, name: "cm" }], {
        DSFETCH_OBJECT_CONCURRENCY: "1",
      });
      expect(result.code, diagnostics(result)).toBe(0);
      await expectFolder(dataset(result.storage, "cm"), "cm/");
      expect(result.staged?.verification).toEqual({ md5: 7 });
      // One object at a time: the first two small objects' GETs are refused (two, so that one
      // glitch does not take checksums from the store: s3-errors.ts), every later one goes
      // without ChecksumMode (the large object's HEAD, if any, is resolve.ts's own).
      const refusedGets = front.requests.filter(
        (r) => r.method === "GET" && r.outcome.startsWith("answered"),
      );
      expect(refusedGets.length).toBe(2);
      const smallGets = front.requests.filter(
        (r) => isObjectGet(r) && r.path.includes("/cm/small-"),
      );
      // Six small objects, two of them asked for twice.
      expect(smallGets.length).toBe(8);
    }, 60_000);
  }

  it("an object the GET says is SSE-KMS: verified by size, saying the store refused ChecksumMode", async () => {
    const front = await startFront({
      answer: (request) =>
        request.headers["x-amz-checksum-mode"] === undefined
          ? undefined
          : s3Error(400, "InvalidArgument", "Unsupported header"),
      // Its ETag is then no MD5: what verifies it is a checksum, which the store cannot give.
      headers: (request, head) => {
        if (isObjectGet(request) && request.path.endsWith("/kms.bin")) {
          head["x-amz-server-side-encryption"] = "aws:kms";
        }
      },
    });
    const result = await fetchVia(
      front.endpoint,
      [{ uri: `s3://${bucket}/cm-kms/`, name: "cmkms" }],
      { DSFETCH_OBJECT_CONCURRENCY: "1" },
    );
    expect(result.code, diagnostics(result)).toBe(0);
    await expectFolder(dataset(result.storage, "cmkms"), "cm-kms/");
    expect(result.staged?.verification).toEqual({
      md5: 1,
      "size-only (the object is encrypted with aws:kms, so its ETag is not an MD5; the store refused ChecksumMode (S3_ERROR))": 1,
    });
  }, 60_000);
});

describe("ranged answers with Transfer-Encoding: chunked (no Content-Length)", () => {
  const chunkedGets: FrontRules = {
    chunked: (request, status) => isObjectGet(request) && status < 300,
  };

  it("a single object in ranges of 1 MiB, each a chunked 206: staged byte-identical", async () => {
    const front = await startFront(chunkedGets);
    const result = await fetchVia(
      front.endpoint,
      [{ uri: `s3://${bucket}/ranged.bin`, name: "ranged" }],
      { DSFETCH_RANGE_SIZE: "1Mi", DSFETCH_RANGE_CONCURRENCY: "2" },
    );
    expect(result.code, diagnostics(result)).toBe(0);
    expect(front.requests.filter((r) => r.outcome === "forwarded chunked").length).toBe(4);
    const bytes = await readFile(join(dataset(result.storage, "ranged"), "ranged.bin"));
    expect(sha256(bytes)).toBe(sha256(objects.get("ranged.bin") as Buffer));
    expect(result.staged?.verification).toEqual({ md5: 1 });
  }, 60_000);

  it("a multipart object in a folder, and a whole-object 200 (Range ignored), chunked: staged and verified", async () => {
    const front = await startFront({
      ...chunkedGets,
      // A store that ignores Range answers the whole object with 200: taken where the range
      // asked for was the whole object (whole.bin, smaller than a range).
      forward: (request, _query, headers) => {
        if (request.path.endsWith("/whole.bin")) delete headers.range;
      },
    });
    const multi = await fetchVia(
      front.endpoint,
      [{ uri: `s3://${bucket}/parts/`, name: "parts" }],
      {
        DSFETCH_RANGE_SIZE: "2Mi",
      },
    );
    expect(multi.code, diagnostics(multi)).toBe(0);
    await expectFolder(dataset(multi.storage, "parts"), "parts/");
    expect(multi.staged?.verification).toEqual({ "multipart-md5": 1 });
    const whole = await fetchVia(front.endpoint, [
      { uri: `s3://${bucket}/whole.bin`, name: "whole" },
    ]);
    expect(whole.code, diagnostics(whole)).toBe(0);
    const bytes = await readFile(join(dataset(whole.storage, "whole"), "whole.bin"));
    expect(sha256(bytes)).toBe(sha256(objects.get("whole.bin") as Buffer));
    expect(
      front.requests.some(
        (r) =>
          r.path.endsWith("/whole.bin") &&
          r.outcome === "forwarded chunked" &&
          r.headers.range !== undefined,
      ),
    ).toBe(true);
  }, 90_000);

  it("a store that ignores Range past the first range: refused, the message naming the framing rightly", async () => {
    const front = await startFront({
      ...chunkedGets,
      forward: (request, _query, headers) => {
        if (
          request.path.endsWith("/ranged.bin") &&
          headers.range?.startsWith("bytes=0-") !== true
        ) {
          delete headers.range;
        }
      },
    });
    const result = await fetchVia(
      front.endpoint,
      [{ uri: `s3://${bucket}/ranged.bin`, name: "ranged" }],
      { DSFETCH_RANGE_SIZE: "1Mi", DSFETCH_RANGE_CONCURRENCY: "1" },
    );
    expect(result.code, diagnostics(result)).toBe(6);
    expect(result.staged?.error?.code).toBe("S3_ERROR");
    expect(result.staged?.error?.message).toMatch(
      /answered a request for bytes 1048576-2097151 with no Content-Range and no Content-Length \(a chunked body, or one that ends when the connection closes\) \(a store that ignores Range sends the whole object\)/,
    );
    expect(result.staged?.error?.message).not.toMatch(/HTTP\/1\.0/);
  }, 60_000);

  it("fetchSpan into memory offered to the socket (BodyTarget) takes a chunked 206, and refuses one a byte short or long", async () => {
    const body = randomBytes(300 * KiB + 11);
    let cut = 0;
    const server = createServer((incoming, out) => {
      const range = /bytes=(\d+)-(\d+)/.exec(incoming.headers.range ?? "");
      const start = Number(range?.[1]);
      const end = Number(range?.[2]);
      const exact = body.subarray(start, end + 1);
      const piece =
        cut > 0 ? Buffer.concat([exact, randomBytes(cut)]) : exact.subarray(0, exact.length + cut);
      out.writeHead(206, {
        "content-range": `bytes ${start}-${end}/${body.length}`,
        etag: '"0123456789abcdef0123456789abcdef"',
        "transfer-encoding": "chunked",
      });
      for (let at = 0; at < piece.length; at += 7_000) out.write(piece.subarray(at, at + 7_000));
      out.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const getter = new ObjectGetter({
      endpoint: {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        region: "us-east-1",
        forcePathStyle: true,
      } as ConstructorParameters<typeof ObjectGetter>[0]["endpoint"],
      credentials: async () => undefined,
      env: {},
    });
    const into = async () => {
      const memory = Buffer.alloc(body.length);
      let kept = 0;
      await fetchSpan(
        {
          getter,
          source: {
            bucket: "b",
            key: "k",
            versionId: undefined,
            etag: "0123456789abcdef0123456789abcdef",
            bytes: body.length,
          },
          signal: new AbortController().signal,
          retry: { retries: 1, minDelayMs: 1, maxDelayMs: 1 },
          errorContext: context,
          stats: { refetchedBytes: 0, retries: 0 },
        },
        { start: 0, end: body.length },
        {
          kept: () => kept,
          room: () => (kept < memory.length ? memory.subarray(kept) : undefined),
          push: (chunk) => {
            if (chunk.buffer === memory.buffer && chunk.byteOffset === memory.byteOffset + kept) {
              kept += chunk.length;
            } else kept += chunk.copy(memory, kept);
          },
          flush: async () => {},
        },
      );
      return memory;
    };
    try {
      expect((await into()).equals(body)).toBe(true);
      cut = 1;
      await expect(into()).rejects.toThrow(/more bytes than the range holds/);
      cut = -1;
      await expect(into()).rejects.toThrow(/connection closed after 307210 of 307211 bytes/);
    } finally {
      getter.destroy();
      await closeServer(server);
    }
  });
});

const context: S3ErrorContext = {
  dataset: "d",
  uri: "s3://b/k",
  bucket: "b",
  endpoint: "the test store",
  anonymous: true,
  action: "reading",
};

describe("a small object's body framed by the connection's close, cut short", () => {
  it("is retried as the cut it is: the folder staged byte-identical on its one listing (it was taken for a changed folder and listed again)", async () => {
    let cuts = 0;
    const front = await startFront({
      cutClosing: (request, status) => {
        if (status >= 300 || !request.path.endsWith("/cm/small-2.bin") || cuts > 0)
          return undefined;
        cuts += 1;
        return 4000;
      },
    });
    const result = await fetchVia(front.endpoint, [{ uri: `s3://${bucket}/cm/`, name: "cm" }]);
    expect(result.code, diagnostics(result)).toBe(0);
    await expectFolder(dataset(result.storage, "cm"), "cm/");
    expect(front.requests.filter((r) => r.outcome === "cut at 4000")).toHaveLength(1);
    expect(front.requests.filter((r) => r.path.endsWith("/cm/small-2.bin"))).toHaveLength(2);
    expect(front.requests.filter(isListing)).toHaveLength(1);
    expect(result.staged?.retries).toBe(1);
  }, 60_000);
});

describe("a store that knows only ListObjects V1", () => {
  /** Drops what V1 does not know, and pages two keys at a time (proxy.mjs "listv1"). */
  const v1Only: FrontRules = {
    forward: (request, query) => {
      if (!isListing(request)) return;
      delete query["list-type"];
      delete query["continuation-token"];
      delete query["start-after"];
      query["max-keys"] = "2";
    },
  };

  it("pages by NextMarker, else the last key, else (with a delimiter) the last of keys and directories", () => {
    const v1 = (body: string, extra = "") =>
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><Marker></Marker><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>${extra}${body}</ListBucketResult>`;
    const entry = (key: string) =>
      `<Contents><Key>${key}</Key><ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>1</Size></Contents>`;
    const dir = (prefix: string) => `<CommonPrefixes><Prefix>${prefix}</Prefix></CommonPrefixes>`;
    // The token is dsfetch's own: the next request asks with marker= (listObjectsPage).
    const byLastKey = parseListPage(v1(entry("p/a") + entry("p/b")));
    expect(byLastKey.entries.map((e) => e.key)).toEqual(["p/a", "p/b"]);
    const next = parseListPage(v1(entry("p/c")), byLastKey.nextToken);
    expect(next.nextToken).not.toBe(byLastKey.nextToken);
    // A store that ignores the marker gives the same page again: refused, not looped on.
    expect(() => parseListPage(v1(entry("p/a") + entry("p/b")), byLastKey.nextToken)).toThrow(
      /goes on after "p\/b" a second time/,
    );
    // NextMarker, URL-encoded as the keys are.
    const encoded = parseListPage(
      v1(entry("p/a%20b"), "<EncodingType>url</EncodingType><NextMarker>p/z%2B</NextMarker>"),
    );
    expect(() =>
      parseListPage(
        v1(entry("p/q"), "<EncodingType>url</EncodingType><NextMarker>p/z%2B</NextMarker>"),
        encoded.nextToken,
      ),
    ).toThrow(/goes on after "p\/z\+" a second time/);
    // With a delimiter and no NextMarker: the last of the page's keys and directories.
    const mixed = parseListPage(v1(entry("p/a") + dir("p/d/")));
    expect(mixed.prefixes).toEqual(["p/d/"]);
    expect(() => parseListPage(v1(dir("p/d/")), mixed.nextToken)).toThrow(
      /goes on after "p\/d\/" a second time/,
    );
    const keyLast = parseListPage(v1(dir("p/d/") + entry("p/e")));
    expect(() => parseListPage(v1(entry("p/e")), keyLast.nextToken)).toThrow(/after "p\/e"/);
    // Nothing to go on after: refused.
    expect(() => parseListPage(v1(""))).toThrow(/V1\) is truncated but gives no NextMarker/);
  });

  it("is listed by marker: every object of a folder with directories, staged", async () => {
    const front = await startFront(v1Only);
    const result = await fetchVia(front.endpoint, [{ uri: `s3://${bucket}/v1/`, name: "v1" }]);
    expect(result.code, diagnostics(result)).toBe(0);
    await expectFolder(dataset(result.storage, "v1"), "v1/");
    const listings = front.requests.filter(isListing);
    expect(listings.some((r) => r.query.marker !== undefined)).toBe(true);
    // V1 pages are asked for as V1: no list-type with a marker.
    expect(
      listings.every((r) => r.query.marker === undefined || r.query["list-type"] === undefined),
    ).toBe(true);
    expect(result.staged?.retries).toBe(0);
  }, 60_000);

  it("a first page with a directory: the directories are listed by marker too (delimiter listings)", async () => {
    const front = await startFront({
      forward: (request, query, headers) => {
        v1Only.forward?.(request, query, headers);
        if (isListing(request)) query["max-keys"] = "3";
      },
    });
    const result = await fetchVia(front.endpoint, [{ uri: `s3://${bucket}/v1/`, name: "v1" }]);
    expect(result.code, diagnostics(result)).toBe(0);
    await expectFolder(dataset(result.storage, "v1"), "v1/");
    const listings = front.requests.filter(isListing);
    expect(listings.some((r) => r.query.delimiter === "/" && r.query.marker !== undefined)).toBe(
      true,
    );
    expect(result.staged?.retries).toBe(0);
  }, 60_000);

  it("a store that ignores the continuation token: refused after 3 identical answers, not 7 over ~20 s", async () => {
    const front = await startFront({
      forward: (request, query) => {
        if (!isListing(request)) return;
        delete query["continuation-token"];
        query["max-keys"] = "2";
      },
    });
    const result = await fetchVia(front.endpoint, [{ uri: `s3://${bucket}/v1/`, name: "v1" }]);
    expect(result.code, diagnostics(result)).toBe(6);
    expect(result.staged?.error?.message).toMatch(/same continuation token twice/);
    // Each listing (the directories', then one plain listing) asks 3 times at most.
    const repeated = front.requests.filter(
      (r) => isListing(r) && r.query["continuation-token"] !== undefined,
    );
    expect(repeated.length).toBeLessThanOrEqual(9);
    expect(result.ms).toBeLessThan(10_000);
  }, 60_000);
});

describe("a store whose continuation tokens go round over empty truncated pages (A, B, A)", () => {
  it("is refused with a clear error instead of listed for ever", async () => {
    const asked: string[] = [];
    const server = createServer((incoming, out) => {
      const url = new URL(incoming.url ?? "/", "http://store");
      const token = url.searchParams.get("continuation-token") ?? "";
      asked.push(token);
      const next = token === "A" ? "B" : "A";
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>${token === "" ? "" : `<ContinuationToken>${token}</ContinuationToken>`}<NextContinuationToken>${next}</NextContinuationToken></ListBucketResult>`;
      out.writeHead(incoming.method === "GET" && url.searchParams.has("list-type") ? 200 : 404, {
        "content-type": "application/xml",
        "content-length": String(Buffer.byteLength(body)),
      });
      out.end(incoming.method === "HEAD" ? undefined : body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const result = await fetchVia(
        `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        [{ uri: "s3://b/p/", name: "p" }],
        {},
        30_000,
      );
      expect(result.signal, diagnostics(result)).toBeNull();
      expect(result.code, diagnostics(result)).toBe(6);
      expect(result.staged?.error?.code).toBe("S3_ERROR");
      expect(result.staged?.error?.message).toMatch(/goes round in a circle/);
      expect(asked.length).toBeLessThan(20);
    } finally {
      await closeServer(server);
    }
  }, 60_000);
});

describe("Retry-After on 503 SlowDown and 429", () => {
  const slowDown = (retryAfter: string, status = 503) =>
    classifyS3Error(
      new S3HttpError(
        status,
        status === 429 ? "TooManyRequests" : "SlowDown",
        "Please reduce your request rate.",
        {
          "retry-after": retryAfter,
        },
      ),
      context,
    );

  it("reads seconds and HTTP-dates, capped at 10 s; nothing for a date past, a value that is neither, or one over 60 s (MinIO's fixed 120)", () => {
    const now = Date.parse("2026-12-06T12:00:00Z");
    expect(retryAfterMs(slowDown("2"), now)).toBe(2000);
    expect(retryAfterMs(slowDown("0"), now)).toBe(0);
    expect(retryAfterMs(slowDown("Sun, 06 Dec 2026 12:00:05 GMT"), now)).toBe(5000);
    expect(retryAfterMs(slowDown("Sun, 06 Dec 2026 11:00:00 GMT"), now)).toBe(0);
    expect(retryAfterMs(slowDown("30"), now)).toBe(MAX_RETRY_AFTER_MS);
    expect(MAX_RETRY_AFTER_MS).toBe(10_000);
    // MinIO answers every 503 with Retry-After: 120, a constant, not a hint.
    expect(retryAfterMs(slowDown("120"), now)).toBe(0);
    expect(retryAfterMs(slowDown("3600"), now)).toBe(0);
    expect(retryAfterMs(slowDown("soon"), now)).toBe(0);
    expect(retryAfterMs(slowDown("1.5"), now)).toBe(0);
    expect(retryAfterMs(new Error("no answer"), now)).toBe(0);
  });

  it("waits what the store asks for (429 too), when longer than the backoff, and says so", async () => {
    for (const status of [503, 429]) {
      const delays: number[] = [];
      let attempts = 0;
      const started = performance.now();
      const value = await withRetry(
        async () => {
          attempts += 1;
          if (attempts === 1) throw slowDown("1", status);
          return "done";
        },
        { minDelayMs: 1, maxDelayMs: 2, onRetry: (_error, _attempt, delay) => delays.push(delay) },
      );
      expect(value).toBe("done");
      expect(performance.now() - started).toBeGreaterThanOrEqual(990);
      expect(delays).toHaveLength(1);
      expect(delays[0]).toBeGreaterThanOrEqual(1000);
    }
  });

  it("the wait ends with an interrupt", async () => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error("interrupted")), 100);
    const started = performance.now();
    await expect(
      withRetry(
        async () => {
          throw slowDown("20");
        },
        { minDelayMs: 1, maxDelayMs: 2, signal: abort.signal },
      ),
    ).rejects.toThrow(/interrupted/);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("end to end: a GET answered 503 SlowDown with Retry-After: 2 is asked again 2 s later", async () => {
    let slowed = 0;
    let slowedAt = 0;
    let againAt = 0;
    const front = await startFront({
      answer: (request) => {
        if (!isObjectGet(request) || !request.path.endsWith("/whole.bin")) return undefined;
        if (slowed++ > 0) {
          againAt ||= performance.now();
          return undefined;
        }
        slowedAt = performance.now();
        return {
          ...s3Error(503, "SlowDown", "Please reduce your request rate."),
          headers: { "content-type": "application/xml", "retry-after": "2" },
        };
      },
    });
    const result = await fetchVia(front.endpoint, [
      { uri: `s3://${bucket}/whole.bin`, name: "whole" },
    ]);
    expect(result.code, diagnostics(result)).toBe(0);
    expect(result.staged?.retries).toBe(1);
    expect(againAt - slowedAt).toBeGreaterThanOrEqual(1_900);
  }, 60_000);
});

describe("a store that answers a part HEAD with If-Match by 412 (moto compares the part's ETag)", () => {
  it("asks again without If-Match: the multipart ETag is recomputed, not size-only", async () => {
    const front = await startFront({
      answer: (request) =>
        request.method === "HEAD" &&
        "partNumber" in request.query &&
        request.headers["if-match"] !== undefined
          ? { status: 412 }
          : undefined,
    });
    const result = await fetchVia(front.endpoint, [
      { uri: `s3://${bucket}/parts/multi.bin`, name: "multi" },
    ]);
    expect(result.code, diagnostics(result)).toBe(0);
    expect(result.staged?.verification).toEqual({ "multipart-md5": 1 });
    const partHeads = front.requests.filter((r) => r.method === "HEAD" && "partNumber" in r.query);
    // Part 1 with If-Match (412), again without; part 3 (the last) without at once.
    expect(partHeads.map((r) => [r.query.partNumber, r.headers["if-match"] !== undefined])).toEqual(
      [
        ["1", true],
        ["1", false],
        ["3", false],
      ],
    );
    // The object's GETs stay pinned.
    expect(
      front.requests.filter(isObjectGet).every((r) => r.headers["if-match"] !== undefined),
    ).toBe(true);
    const bytes = await readFile(join(dataset(result.storage, "multi"), "multi.bin"));
    expect(sha256(bytes)).toBe(sha256(objects.get("parts/multi.bin") as Buffer));
  }, 60_000);
});
