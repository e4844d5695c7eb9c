// A TCP proxy the tests start in front of the S3 server to break connections on purpose:
// cut (FIN) or reset (RST) a connection, or stall it, once a given number of bytes has gone
// from the server to the client; throttle everything; rewrite chosen responses (ListObjectsV2
// XML). Bytes pass through unchanged otherwise, so SigV4 signatures stay valid: the client
// signs for the proxy's host:port and the server checks against the Host header it receives.
//
// It parses just enough HTTP/1.1 in both directions (request lines, header ends,
// Content-Length and chunked bodies; keep-alive connections carry many requests) to log every
// request with its response status and to count response body bytes per request. The target
// must speak plain http (a TLS stream cannot be parsed).
//
// What the counters count, all since start or the last resetCounters():
// - bytesToClient: every byte written to client sockets (headers, bodies, chunk framing).
//   Cuts and stalls lose nothing written; resets wait until the client's kernel has taken
//   every byte written before sending the RST (see resetAt), so this is what clients got.
// - getBodyBytes(): the part of bytesToClient that is response bodies to GET requests
//   (object reads and listings alike: tell them apart with requests and isListObjectsV2).
// - requests: one entry per request seen, in order, with its response status and the body
//   bytes delivered to the client.
//
// Faults are armed at an offset counted in bytes written to clients, over all connections,
// from the moment the fault is armed; each fires once, on the connection that carries that
// byte, after exactly `offset` bytes.
//
// HTTP-level faults, apart from those: slowDownNext(n) answers the next n GET requests with
// an S3 `503 SlowDown` error instead of the server's response (which is read and dropped).
import { readFile } from "node:fs/promises";
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";

export type FaultKind = "cut" | "reset" | "stall";

export interface ProxiedRequest {
  /** Order of arrival over all connections, from 0. */
  readonly id: number;
  readonly connection: number;
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly target: string;
  /** Request headers, names in lowercase (repeated ones joined with ", "). */
  readonly headers: Readonly<Record<string, string>>;
  /** Status of the final response, once its headers were seen. */
  status: number | undefined;
  /** Body bytes of its response written to the client (chunk framing included). */
  bodyBytes: number;
  /** Its whole response (as the server sent it, or rewritten) was written to the client. */
  complete: boolean;
  /** Its response body was replaced by a rewrite rule. */
  rewritten: boolean;
}

export interface FiredFault {
  readonly kind: FaultKind;
  /** The offset it was armed with. */
  readonly offset: number;
  readonly connection: number;
  /** The request whose response was being written, if any. */
  readonly request: ProxiedRequest | undefined;
}

export interface ResponseRewrite {
  /** Called when a response's headers arrive; true buffers the whole response for rewrite. */
  match(request: ProxiedRequest, status: number): boolean;
  /**
   * The new body (decoded from chunked if it was); Content-Length is set to its length
   * (a HEAD's Content-Length, the object's, is kept).
   */
  rewrite(body: Buffer, request: ProxiedRequest): Buffer | string;
  /** The response's status line, changed ("HTTP/1.1 403 Forbidden"): a store's refusal. */
  startLine?(line: string, request: ProxiedRequest): string;
  /** The response's header fields, changed (ETag, Content-Length…); after Content-Length is set. */
  headers?(fields: [string, string][], request: ProxiedRequest): [string, string][];
  /** Writes the rewritten response, head and body, at this rate: a store that trickles. */
  readonly bytesPerSecond?: number | undefined;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: give it to clients as their endpoint. */
  readonly endpoint: string;
  readonly port: number;
  readonly bytesToClient: number;
  readonly bytesToServer: number;
  getBodyBytes(): number;
  readonly requests: readonly ProxiedRequest[];
  resetCounters(): void;
  /** After `offset` more bytes, end both sockets of that connection (FIN), mid-response. */
  cutAt(offset: number): void;
  /**
   * After `offset` more bytes, reset that connection (RST) and close the server side. Nothing
   * more is forwarded on it; the RST waits (up to `drainMs`, default 3000; 0: RST at once)
   * until the client's kernel has acknowledged every byte written. An RST throws away what
   * still sits unsent in the proxy's socket buffer (megabytes on loopback when the client
   * reads slower than the server sends), so without the wait the client could receive less
   * than bytesToClient says. Linux: the unsent count comes from /proc/net/tcp; elsewhere the
   * RST simply comes `drainMs` later.
   */
  resetAt(offset: number, drainMs?: number): void;
  /** After `offset` more bytes, forward nothing more on that connection for `ms` (Infinity: never). */
  stallAt(offset: number, ms: number): void;
  /** Limit the rate of all server→client forwarding (undefined: unlimited). */
  throttle(bytesPerSecond: number | undefined): void;
  rewriteResponses(rule: ResponseRewrite | undefined): void;
  /**
   * Answers the next `count` GET requests (over all connections, in order of arrival; only
   * those `match` accepts, when given; listings are GETs too) with `503 Slow Down` and an S3
   * error body `<Error><Code>SlowDown</Code>…</Error>` instead of the server's response. The
   * request still goes to the server, whose response is read in full and dropped, so the
   * keep-alive connection stays in step; the 503 is sent once it has been read. Such a
   * request shows status 503 in `requests`, and the error body counts as its body bytes.
   * Adds to any count still pending (`match` replaces the previous one).
   */
  slowDownNext(count: number, match?: (request: ProxiedRequest) => boolean): void;
  /** SlowDown answers armed by slowDownNext not given yet. */
  readonly pendingSlowDowns: number;
  /** Faults armed that have not fired yet. */
  readonly pendingFaults: number;
  readonly firedFaults: readonly FiredFault[];
  /** Disarms the faults not fired yet, and the SlowDown answers not given yet. */
  clearFaults(): void;
  readonly openConnections: number;
  /** Stops listening and destroys every connection (stalled ones included). */
  close(): Promise<void>;
}

/** A ListObjectsV2 request (`GET /bucket?list-type=2…` or virtual-host `GET /?list-type=2…`). */
export function isListObjectsV2(request: Pick<ProxiedRequest, "method" | "target">): boolean {
  return request.method === "GET" && /[?&]list-type=2(&|$)/.test(request.target);
}

/** XML-escapes text for an element's content. */
export function xmlEscape(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** Adds `<Contents>` entries to a ListObjectsV2 result (and raises KeyCount to match). */
export function injectListEntries(
  xml: string,
  entries: readonly { key: string; size: number; etag: string }[],
): string {
  // Asked for with encoding-type=url (as dsfetch does), a store URL-encodes the keys.
  const urlEncoded = /<EncodingType>url<\/EncodingType>/i.test(xml);
  const encodeKey = (key: string) =>
    urlEncoded ? encodeURIComponent(key).replace(/%2F/g, "/").replace(/%20/g, "+") : key;
  const items = entries
    .map(
      (e) =>
        `<Contents><Key>${xmlEscape(encodeKey(e.key))}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>` +
        `<ETag>&quot;${xmlEscape(e.etag)}&quot;</ETag><Size>${e.size}</Size>` +
        `<StorageClass>STANDARD</StorageClass></Contents>`,
    )
    .join("");
  const close = xml.lastIndexOf("</ListBucketResult>");
  if (close === -1) throw new Error(`not a ListBucketResult: ${xml.slice(0, 200)}`);
  const withItems = `${xml.slice(0, close)}${items}${xml.slice(close)}`;
  return withItems.replace(
    /<KeyCount>(\d+)<\/KeyCount>/,
    (_, n: string) => `<KeyCount>${Number(n) + entries.length}</KeyCount>`,
  );
}

// ---------------------------------------------------------------------------------------------
// A streaming HTTP/1.1 message framer: finds header ends and body ends, nothing more.

type BodyMode =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "until-close" };

interface Head {
  readonly raw: Buffer;
  readonly startLine: string;
  /** Header lines as sent (name, value), in order. */
  readonly fields: readonly (readonly [string, string])[];
  header(name: string): string | undefined;
}

interface FramerSink {
  /** A message's headers; returns how its body is framed. */
  head(head: Head): BodyMode;
  /** Wire bytes of the body; `payload` false for chunk framing (sizes, CRLFs, trailers). */
  body(raw: Buffer, payload: boolean): void;
  end(): void;
  /** Bytes that could not be parsed (from there on, everything is passed here). */
  opaque(raw: Buffer): void;
}

const MAX_HEAD = 64 * 1024;
const CRLF = Buffer.from("\r\n");
const HEAD_END = Buffer.from("\r\n\r\n");

class HttpFramer {
  private state:
    | "head"
    | "length"
    | "chunk-size"
    | "chunk-data"
    | "chunk-crlf"
    | "trailer"
    | "until-close"
    | "opaque" = "head";
  private pending: Buffer = Buffer.alloc(0);
  private remaining = 0;
  private readonly sink: FramerSink;

  constructor(sink: FramerSink) {
    this.sink = sink;
  }

  push(chunk: Buffer): void {
    let data = chunk;
    while (data.length > 0) {
      switch (this.state) {
        case "opaque":
          this.sink.opaque(data);
          return;
        case "head": {
          const buffered = this.pending.length;
          const joined = buffered === 0 ? data : Buffer.concat([this.pending, data]);
          const searchFrom = Math.max(0, buffered - 3);
          const end = joined.indexOf(HEAD_END, searchFrom);
          if (end === -1) {
            if (joined.length > MAX_HEAD) this.giveUp(joined);
            else this.pending = Buffer.from(joined);
            return;
          }
          this.pending = Buffer.alloc(0);
          const raw = joined.subarray(0, end + 4);
          data = joined.subarray(end + 4);
          const head = parseHead(raw);
          if (head === undefined) {
            this.giveUp(joined);
            return;
          }
          this.begin(this.sink.head(head));
          break;
        }
        case "length": {
          const n = Math.min(this.remaining, data.length);
          this.sink.body(data.subarray(0, n), true);
          this.remaining -= n;
          data = data.subarray(n);
          if (this.remaining === 0) this.finishMessage();
          break;
        }
        case "until-close":
          this.sink.body(data, true);
          return;
        case "chunk-size":
        case "trailer": {
          const joined = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
          const eol = joined.indexOf(CRLF);
          if (eol === -1) {
            if (joined.length > MAX_HEAD) this.giveUp(joined);
            else this.pending = Buffer.from(joined);
            return;
          }
          this.pending = Buffer.alloc(0);
          const line = joined.subarray(0, eol + 2);
          const text = line.toString("latin1", 0, eol);
          const size =
            this.state === "trailer" ? 0 : Number.parseInt(text.split(";")[0]?.trim() ?? "", 16);
          if (!Number.isFinite(size) || size < 0) {
            this.giveUp(joined);
            return;
          }
          data = joined.subarray(eol + 2);
          this.sink.body(line, false);
          if (this.state === "trailer") {
            if (text === "") this.finishMessage();
            break;
          }
          if (size === 0) this.state = "trailer";
          else {
            this.remaining = size;
            this.state = "chunk-data";
          }
          break;
        }
        case "chunk-data": {
          const n = Math.min(this.remaining, data.length);
          this.sink.body(data.subarray(0, n), true);
          this.remaining -= n;
          data = data.subarray(n);
          if (this.remaining === 0) {
            this.remaining = 2;
            this.state = "chunk-crlf";
          }
          break;
        }
        case "chunk-crlf": {
          const n = Math.min(this.remaining, data.length);
          this.sink.body(data.subarray(0, n), false);
          this.remaining -= n;
          data = data.subarray(n);
          if (this.remaining === 0) this.state = "chunk-size";
          break;
        }
      }
    }
  }

  /** The stream ended: a body framed by the connection's end is complete now. */
  finish(): void {
    if (this.state === "until-close") this.finishMessage();
    else if (this.pending.length > 0) this.giveUp(this.pending);
  }

  private giveUp(rest: Buffer): void {
    this.state = "opaque";
    this.pending = Buffer.alloc(0);
    this.sink.opaque(rest);
  }

  private begin(mode: BodyMode): void {
    if (mode.kind === "none" || (mode.kind === "length" && mode.length === 0)) {
      this.finishMessage();
    } else if (mode.kind === "length") {
      this.remaining = mode.length;
      this.state = "length";
    } else if (mode.kind === "chunked") {
      this.state = "chunk-size";
    } else {
      this.state = "until-close";
    }
  }

  private finishMessage(): void {
    this.state = "head";
    this.sink.end();
  }
}

function parseHead(raw: Buffer): Head | undefined {
  const lines = raw.toString("latin1").split("\r\n");
  // Tolerate blank lines before a message (RFC 9112 §2.2).
  while (lines[0] === "") lines.shift();
  const startLine = lines.shift();
  if (startLine === undefined || startLine === "") return undefined;
  const fields: [string, string][] = [];
  for (const line of lines) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    fields.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return {
    raw,
    startLine,
    fields,
    header(name) {
      const wanted = name.toLowerCase();
      const found = fields.filter(([n]) => n.toLowerCase() === wanted).map(([, v]) => v);
      return found.length === 0 ? undefined : found.join(", ");
    },
  };
}

function requestBodyMode(head: Head): BodyMode {
  if (/\bchunked\b/i.test(head.header("transfer-encoding") ?? "")) return { kind: "chunked" };
  const length = Number(head.header("content-length") ?? "0");
  return { kind: "length", length: Number.isSafeInteger(length) && length > 0 ? length : 0 };
}

// ---------------------------------------------------------------------------------------------

interface Segment {
  readonly buf: Buffer;
  offset: number;
  readonly request: ProxiedRequest | undefined;
  readonly body: boolean;
  /** Writing it completes the response of `request`. */
  readonly last: boolean;
  /** Written at this rate (a rewrite's bytesPerSecond), in pieces of a tenth of it (at least a byte). */
  readonly bytesPerSecond?: number | undefined;
}

interface Connection {
  readonly id: number;
  readonly client: Socket;
  readonly upstream: Socket;
  /** Requests sent upstream whose response has not begun yet. */
  readonly awaiting: ProxiedRequest[];
  /** Server→client output not written yet. */
  out: Segment[];
  queued: number;
  /** The response being read from upstream. */
  current: ProxiedRequest | undefined;
  rewriting: { head: Head; payload: Buffer[] } | undefined;
  /** The response being read is dropped and answered with a 503 SlowDown at its end. */
  slowing: { head: Head; request: ProxiedRequest } | undefined;
  stalledUntil: number;
  /** When the next piece of a trickled segment may go. */
  trickleAt: number;
  stallTimer: NodeJS.Timeout | undefined;
  throttleTimer: NodeJS.Timeout | undefined;
  clientBlocked: boolean;
  upstreamPaused: boolean;
  upstreamEnded: boolean;
  closed: boolean;
}

interface ArmedFault {
  readonly kind: FaultKind;
  readonly offset: number;
  /** Absolute position in `written` at which it fires. */
  readonly at: number;
  /** How long a stall lasts; for a reset, the longest wait for the client to drain. */
  readonly ms: number;
}

/** Upstream is paused while this much output waits for the client. */
const HIGH_WATER = 256 * 1024;

class FaultProxyImpl implements FaultProxy {
  readonly endpoint: string;
  readonly port: number;
  bytesToClient = 0;
  bytesToServer = 0;
  requests: ProxiedRequest[] = [];
  firedFaults: FiredFault[] = [];
  private getBody = 0;
  /** Bytes written to clients since start, never reset: faults are placed on this axis. */
  private written = 0;
  private faults: ArmedFault[] = [];
  private rate: number | undefined;
  private tokens = 0;
  private refilledAt = 0;
  private rule: ResponseRewrite | undefined;
  private slowDowns = 0;
  private slowDownMatch: ((request: ProxiedRequest) => boolean) | undefined;
  private readonly slowed = new WeakSet<ProxiedRequest>();
  private readonly connections = new Set<Connection>();
  private nextConnection = 0;
  private nextRequest = 0;

  private readonly server: Server;
  private readonly target: { host: string; port: number };

  constructor(server: Server, target: { host: string; port: number }) {
    this.server = server;
    this.target = target;
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("proxy is not on TCP");
    this.port = address.port;
    this.endpoint = `http://127.0.0.1:${this.port}`;
    server.on("connection", (client) => this.accept(client));
  }

  get pendingFaults(): number {
    return this.faults.length;
  }

  get pendingSlowDowns(): number {
    return this.slowDowns;
  }

  get openConnections(): number {
    return this.connections.size;
  }

  getBodyBytes(): number {
    return this.getBody;
  }

  resetCounters(): void {
    this.bytesToClient = 0;
    this.bytesToServer = 0;
    this.getBody = 0;
    this.requests = [];
  }

  cutAt(offset: number): void {
    this.arm("cut", offset, 0);
  }

  resetAt(offset: number, drainMs = 3000): void {
    if (!(drainMs >= 0 && Number.isFinite(drainMs))) {
      throw new Error(`resetAt: drainMs must be a finite number >= 0, got ${drainMs}`);
    }
    this.arm("reset", offset, drainMs);
  }

  stallAt(offset: number, ms: number): void {
    if (!(ms > 0)) throw new Error(`stallAt: ms must be > 0, got ${ms}`);
    this.arm("stall", offset, ms);
  }

  clearFaults(): void {
    this.faults = [];
    this.slowDowns = 0;
    this.slowDownMatch = undefined;
  }

  slowDownNext(count: number, match?: (request: ProxiedRequest) => boolean): void {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new Error(`slowDownNext: count must be a whole number >= 0, got ${count}`);
    }
    this.slowDowns += count;
    this.slowDownMatch = match;
  }

  /** Marks a request just seen to be answered with a SlowDown, when some are armed. */
  private maybeSlowDown(request: ProxiedRequest): void {
    if (this.slowDowns === 0 || request.method !== "GET") return;
    if (this.slowDownMatch !== undefined && !this.slowDownMatch(request)) return;
    this.slowDowns -= 1;
    this.slowed.add(request);
  }

  throttle(bytesPerSecond: number | undefined): void {
    if (bytesPerSecond !== undefined && !(bytesPerSecond > 0)) {
      throw new Error(`throttle: bytesPerSecond must be > 0, got ${bytesPerSecond}`);
    }
    this.rate = bytesPerSecond;
    this.tokens = 0;
    this.refilledAt = performance.now();
    for (const conn of this.connections) this.pump(conn);
  }

  rewriteResponses(rule: ResponseRewrite | undefined): void {
    this.rule = rule;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of this.connections) this.destroy(conn);
    await closed;
  }

  private arm(kind: FaultKind, offset: number, ms: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new Error(`${kind}At: offset must be a whole number >= 0, got ${offset}`);
    }
    this.faults.push({ kind, offset, at: this.written + offset, ms });
    this.faults.sort((a, b) => a.at - b.at);
  }

  private accept(client: Socket): void {
    client.setNoDelay(true);
    const upstream = netConnect({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    const conn: Connection = {
      id: this.nextConnection++,
      client,
      upstream,
      awaiting: [],
      out: [],
      queued: 0,
      current: undefined,
      rewriting: undefined,
      slowing: undefined,
      stalledUntil: 0,
      trickleAt: 0,
      stallTimer: undefined,
      throttleTimer: undefined,
      clientBlocked: false,
      upstreamPaused: false,
      upstreamEnded: false,
      closed: false,
    };
    this.connections.add(conn);

    const requests = new HttpFramer({
      head: (head) => {
        const [method = "", target = ""] = head.startLine.split(" ");
        const headers: Record<string, string> = {};
        for (const [name] of head.fields) {
          const key = name.toLowerCase();
          headers[key] ??= head.header(key) ?? "";
        }
        const request: ProxiedRequest = {
          id: this.nextRequest++,
          connection: conn.id,
          method,
          target,
          headers,
          status: undefined,
          bodyBytes: 0,
          complete: false,
          rewritten: false,
        };
        this.requests.push(request);
        this.maybeSlowDown(request);
        conn.awaiting.push(request);
        return requestBodyMode(head);
      },
      body: () => {},
      end: () => {},
      opaque: () => {},
    });
    const responses = new HttpFramer({
      head: (head) => this.responseHead(conn, head),
      body: (raw, payload) => {
        if (conn.rewriting !== undefined) {
          if (payload) conn.rewriting.payload.push(Buffer.from(raw));
        } else if (conn.slowing !== undefined) {
          // Dropped: a SlowDown answer replaces this response at its end.
        } else {
          this.enqueue(conn, raw, conn.current, true, false);
        }
      },
      end: () => this.responseEnd(conn),
      opaque: (raw) => this.enqueue(conn, Buffer.from(raw), undefined, false, false),
    });

    client.on("data", (chunk: Buffer) => {
      this.bytesToServer += chunk.length;
      requests.push(chunk);
      if (!upstream.destroyed) upstream.write(chunk);
    });
    client.on("end", () => {
      if (!upstream.destroyed) upstream.end();
    });
    client.on("drain", () => {
      conn.clientBlocked = false;
      this.pump(conn);
    });
    client.on("error", () => this.destroy(conn));
    client.on("close", () => this.destroy(conn));

    upstream.on("data", (chunk: Buffer) => {
      if (conn.closed) return;
      responses.push(chunk);
      this.pump(conn);
    });
    upstream.on("end", () => {
      responses.finish();
      conn.upstreamEnded = true;
      this.pump(conn);
    });
    upstream.on("error", () => this.destroy(conn));
    upstream.on("close", () => {
      // After a cut the client side is closing on its own (FIN sent): leave it be.
      if (!conn.upstreamEnded && !conn.closed) this.destroy(conn);
    });
  }

  private responseHead(conn: Connection, head: Head): BodyMode {
    const status = Number(head.startLine.split(" ")[1]);
    const informational = status >= 100 && status < 200 && status !== 101;
    if (!informational) {
      conn.current = conn.awaiting.shift();
      if (conn.current !== undefined) conn.current.status = status;
    }
    const request = informational ? conn.awaiting[0] : conn.current;
    const noBody =
      informational ||
      status === 204 ||
      status === 304 ||
      request?.method === "HEAD" ||
      request?.method === "CONNECT";
    let mode: BodyMode;
    if (noBody) mode = { kind: "none" };
    else if (/\bchunked\b/i.test(head.header("transfer-encoding") ?? ""))
      mode = { kind: "chunked" };
    else if (head.header("content-length") !== undefined) {
      const length = Number(head.header("content-length"));
      mode =
        Number.isSafeInteger(length) && length >= 0
          ? { kind: "length", length }
          : { kind: "until-close" };
    } else mode = { kind: "until-close" };

    if (!informational && request !== undefined && this.slowed.has(request)) {
      request.status = 503;
      conn.slowing = { head, request };
    } else if (
      !informational &&
      request !== undefined &&
      this.rule?.match(request, status) === true
    ) {
      conn.rewriting = { head, payload: [] };
    } else {
      this.enqueue(conn, head.raw, informational ? undefined : request, false, false);
    }
    return mode;
  }

  private responseEnd(conn: Connection): void {
    const request = conn.current;
    const rewriting = conn.rewriting;
    conn.rewriting = undefined;
    const slowing = conn.slowing;
    conn.slowing = undefined;
    if (slowing !== undefined) {
      const answer = slowDownResponse(slowing.request, slowing.head.header("connection"));
      this.enqueue(conn, answer.head, slowing.request, false, false);
      this.enqueue(conn, answer.body, slowing.request, true, false);
    }
    if (rewriting !== undefined && request !== undefined && this.rule !== undefined) {
      const replaced = this.rule.rewrite(Buffer.concat(rewriting.payload), request);
      const body = typeof replaced === "string" ? Buffer.from(replaced, "utf8") : replaced;
      const head = request.method === "HEAD";
      let fields: [string, string][] = rewriting.head.fields
        .filter(
          ([name]) =>
            !/^(transfer-encoding|content-md5)$/i.test(name) &&
            (head || !/^content-length$/i.test(name)),
        )
        .map(([name, value]) => [name, value]);
      if (!head) fields.push(["Content-Length", String(body.length)]);
      fields = this.rule.headers?.(fields, request) ?? fields;
      const headText = [
        this.rule.startLine?.(rewriting.head.startLine, request) ?? rewriting.head.startLine,
        ...fields.map(([name, value]) => `${name}: ${value}`),
        "",
        "",
      ].join("\r\n");
      request.rewritten = true;
      const rate = this.rule.bytesPerSecond;
      this.enqueue(conn, Buffer.from(headText, "latin1"), request, false, false, rate);
      this.enqueue(conn, body, request, true, false, rate);
    }
    this.enqueue(conn, Buffer.alloc(0), request, false, true);
    conn.current = undefined;
  }

  private enqueue(
    conn: Connection,
    buf: Buffer,
    request: ProxiedRequest | undefined,
    body: boolean,
    last: boolean,
    bytesPerSecond?: number,
  ): void {
    conn.out.push({ buf, offset: 0, request, body, last, bytesPerSecond });
    conn.queued += buf.length;
    if (conn.queued > HIGH_WATER && !conn.upstreamPaused) {
      conn.upstreamPaused = true;
      conn.upstream.pause();
    }
  }

  /** Writes what the connection may write now: honours stalls, throttle, faults, backpressure. */
  private pump(conn: Connection): void {
    // The first throttled write of a pass takes whatever whole bytes have built up (every
    // connection keeps moving, however many share the allowance); the next ones of the same
    // pass wait for a piece (takeTokens).
    let throttledWrites = 0;
    while (conn.out.length > 0) {
      if (conn.closed || conn.clientBlocked) return;
      if (conn.stalledUntil > performance.now()) return;
      const fault = this.faults[0];
      if (fault !== undefined && fault.at <= this.written) {
        this.faults.shift();
        this.fire(fault, conn);
        continue;
      }
      const segment = conn.out[0] as Segment;
      let n = segment.buf.length - segment.offset;
      if (fault !== undefined) n = Math.min(n, fault.at - this.written);
      if (n > 0 && segment.bytesPerSecond !== undefined) {
        const now = performance.now();
        if (now < conn.trickleAt) {
          if (conn.throttleTimer === undefined) {
            conn.throttleTimer = setTimeout(
              () => {
                conn.throttleTimer = undefined;
                this.pump(conn);
              },
              Math.ceil(conn.trickleAt - now),
            );
          }
          return;
        }
        const piece = Math.max(1, Math.floor(segment.bytesPerSecond / 10));
        n = Math.min(n, piece);
      }
      if (n > 0 && this.rate !== undefined) {
        n = this.takeTokens(n, throttledWrites === 0 ? 1 : this.tokenPiece());
        if (n === 0) {
          this.waitForTokens(conn);
          return;
        }
        throttledWrites += 1;
      }
      // The trickle's next slot only once this piece is written (a piece the throttle held
      // back used up no slot).
      if (n > 0 && segment.bytesPerSecond !== undefined) {
        conn.trickleAt = performance.now() + (n * 1000) / segment.bytesPerSecond;
      }
      if (n > 0) {
        const piece = segment.buf.subarray(segment.offset, segment.offset + n);
        segment.offset += n;
        conn.queued -= n;
        this.written += n;
        this.bytesToClient += n;
        if (segment.body && segment.request !== undefined) {
          segment.request.bodyBytes += n;
          if (segment.request.method === "GET") this.getBody += n;
        }
        if (!conn.client.write(piece)) conn.clientBlocked = true;
      }
      if (segment.offset === segment.buf.length) {
        conn.out.shift();
        if (segment.last && segment.request !== undefined) segment.request.complete = true;
      }
    }
    if (conn.closed) return;
    if (
      conn.upstreamPaused &&
      conn.queued <= HIGH_WATER / 2 &&
      conn.stalledUntil <= performance.now()
    ) {
      conn.upstreamPaused = false;
      conn.upstream.resume();
    }
    if (conn.upstreamEnded && conn.out.length === 0 && !conn.client.writableEnded)
      conn.client.end();
  }

  private fire(fault: ArmedFault, conn: Connection): void {
    const request = conn.out[0]?.request ?? conn.current;
    this.firedFaults.push({ kind: fault.kind, offset: fault.offset, connection: conn.id, request });
    if (fault.kind === "cut") {
      conn.closed = true;
      this.clearTimers(conn);
      conn.out = [];
      conn.queued = 0;
      conn.client.end();
      conn.upstream.destroy();
    } else if (fault.kind === "reset") {
      const reset = () => {
        conn.closed = true;
        this.clearTimers(conn);
        conn.out = [];
        conn.queued = 0;
        conn.client.resetAndDestroy();
        conn.upstream.destroy();
      };
      if (fault.ms === 0) reset();
      else {
        this.hold(conn, Number.POSITIVE_INFINITY);
        const deadline = performance.now() + fault.ms;
        const localPort = conn.client.localPort;
        const remotePort = conn.client.remotePort;
        const poll = async (): Promise<void> => {
          conn.stallTimer = undefined;
          if (conn.closed) return;
          const drained =
            conn.client.writableLength === 0 && (await unsentBytes(localPort, remotePort)) === 0;
          if (conn.closed) return;
          if (drained || performance.now() >= deadline) reset();
          else conn.stallTimer = setTimeout(poll, 5);
        };
        conn.stallTimer = setTimeout(poll, 0);
      }
    } else {
      this.hold(conn, fault.ms);
      if (Number.isFinite(fault.ms)) {
        clearTimeout(conn.stallTimer);
        conn.stallTimer = setTimeout(() => {
          conn.stallTimer = undefined;
          conn.stalledUntil = 0;
          this.pump(conn);
        }, fault.ms);
      }
    }
  }

  /** Forwards nothing on `conn` for `ms` (the caller schedules what ends it). */
  private hold(conn: Connection, ms: number): void {
    conn.stalledUntil = performance.now() + ms;
    if (!conn.upstreamPaused) {
      conn.upstreamPaused = true;
      conn.upstream.pause();
    }
  }

  /** Up to `wanted` bytes of the allowance; none unless min(wanted, `least`) have built up. */
  private takeTokens(wanted: number, least: number): number {
    const rate = this.rate as number;
    const now = performance.now();
    const burst = Math.max(16 * 1024, rate / 50);
    this.tokens = Math.min(burst, this.tokens + ((now - this.refilledAt) / 1000) * rate);
    this.refilledAt = now;
    // Within one pass of pump(), after its first write, nothing until a piece has built up
    // (waitForTokens' amount, or what is left to write): granted whatever the last write
    // earned, pump() went on writing a few bytes at a time, a socket write each, and spun a
    // core for as long as the throttle lasted (~2.5 CPU-s per throttled test, 2026-12-07).
    if (this.tokens < Math.max(1, Math.min(wanted, least))) return 0;
    const n = Math.min(wanted, Math.floor(this.tokens));
    this.tokens -= n;
    return n;
  }

  /** The allowance a throttled write waits for: 16 KiB, or a fiftieth of a second's. */
  private tokenPiece(): number {
    return Math.max(1, Math.floor(Math.min(16 * 1024, (this.rate as number) / 50)));
  }

  private waitForTokens(conn: Connection): void {
    if (conn.throttleTimer !== undefined) return;
    const rate = this.rate as number;
    const ms = Math.max(1, Math.ceil(((this.tokenPiece() - this.tokens) / rate) * 1000));
    conn.throttleTimer = setTimeout(() => {
      conn.throttleTimer = undefined;
      this.pump(conn);
    }, ms);
  }

  private clearTimers(conn: Connection): void {
    clearTimeout(conn.stallTimer);
    clearTimeout(conn.throttleTimer);
    conn.stallTimer = undefined;
    conn.throttleTimer = undefined;
  }

  private destroy(conn: Connection): void {
    conn.closed = true;
    this.clearTimers(conn);
    conn.out = [];
    conn.queued = 0;
    conn.client.destroy();
    conn.upstream.destroy();
    this.connections.delete(conn);
  }
}

/** An S3 `503 SlowDown` error response to `request` (`connection`: the server's header). */
function slowDownResponse(
  request: ProxiedRequest,
  connection: string | undefined,
): { head: Buffer; body: Buffer } {
  const requestId = `FAULTPROXY${String(request.id).padStart(6, "0")}`;
  const resource = request.target.split("?")[0] ?? "/";
  const body = Buffer.from(
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
      "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>" +
      `<Resource>${xmlEscape(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`,
    "utf8",
  );
  const head = [
    "HTTP/1.1 503 Slow Down",
    "Content-Type: application/xml",
    `Content-Length: ${body.length}`,
    `x-amz-request-id: ${requestId}`,
    "Server: dsfetch-fault-proxy",
    ...(connection === undefined ? [] : [`Connection: ${connection}`]),
    "",
    "",
  ].join("\r\n");
  return { head: Buffer.from(head, "latin1"), body };
}

/**
 * Bytes written to a TCP socket that its peer has not acknowledged yet (Linux: tx_queue in
 * /proc/net/tcp{,6}), found by its ports; undefined where that cannot be read.
 */
async function unsentBytes(
  localPort: number | undefined,
  remotePort: number | undefined,
): Promise<number | undefined> {
  if (localPort === undefined || remotePort === undefined) return undefined;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = await readFile(file, "latin1");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const port = (address: string | undefined) =>
        Number.parseInt(address?.slice(address.lastIndexOf(":") + 1) ?? "", 16);
      if (port(fields[1]) === localPort && port(fields[2]) === remotePort) {
        return Number.parseInt(fields[4]?.split(":")[0] ?? "", 16);
      }
    }
  }
  return undefined;
}

/** Starts a proxy on 127.0.0.1 (a free port) in front of `targetEndpoint` (`http://host:port`). */
/**
 * Damages the first successful GET answer whose target includes `key`, once: one byte in the
 * middle of its body flipped (bytes damaged on the way). Decided when the answer's headers
 * arrive: ranges in flight reach `match` before any rewrite, and a count kept in `rewrite`
 * let two answers through (two bytes damaged). Returns how many answers were damaged.
 */
export function damageOneGet(proxy: FaultProxy, key: string): () => number {
  let matched = false;
  let damaged = 0;
  proxy.rewriteResponses({
    match: (request, status) => {
      if (matched || request.method !== "GET" || status >= 300 || !request.target.includes(key)) {
        return false;
      }
      matched = true;
      return true;
    },
    rewrite: (body) => {
      damaged += 1;
      const copy = Buffer.from(body);
      copy[copy.length >> 1] = (copy[copy.length >> 1] ?? 0) ^ 0xff;
      return copy;
    },
  });
  return () => damaged;
}

export async function startFaultProxy(targetEndpoint: string): Promise<FaultProxy> {
  const url = new URL(targetEndpoint);
  if (url.protocol !== "http:") {
    throw new Error(`fault proxy: the target must be plain http, got ${targetEndpoint}`);
  }
  const target = {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: url.port === "" ? 80 : Number(url.port),
  };
  const server = createServer({ allowHalfOpen: false });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return new FaultProxyImpl(server, target);
}
