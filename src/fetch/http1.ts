/**
 * A small HTTP/1.1 client for the download hot path: GET and HEAD over keep-alive
 * connections whose sockets read into one reused buffer (the `onread` option of net and tls),
 * bodies handed to the caller as views it copies where it keeps them.
 *
 * Why not node:http: it allocates a new Buffer for every 64 KiB read. For a 2 GiB object that
 * is 32k external allocations, and V8 starts a major GC every time external memory grew by
 * its soft limit: ~90 mark-compacts per download, 1.3 s of GC threads, plus per-chunk stream
 * machinery and writes from cold buffers. Measured here (2 GiB, 8 ranged GETs of 8 MiB,
 * written to one file): node:http 3.0-4.0 s wall and 3.6-5.5 s of CPU; this client 1.65-1.75 s
 * and 1.3-1.5 s of CPU (s5cmd: 2.0 s). Requests are few kinds (signed GET/HEAD, no request
 * body, no proxy), so the protocol needed is small: status line, headers, Content-Length or
 * chunked bodies, keep-alive.
 */
import { isIP, connect as netConnect, type Socket } from "node:net";
import type { ConnectionOptions } from "node:tls";
import { type ProxySettings, ProxyTunnel, proxyError } from "./proxy.ts";
import { tlsModule } from "./tls-module.ts";

export interface Http1Request {
  readonly method: "GET" | "HEAD";
  /** Path and query, already encoded. */
  readonly path: string;
  /** Sent as given (lowercase names); must include `host`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal | undefined;
}

/** Receives body bytes: a view valid only during the call (copy what you keep). */
export type BodyConsumer = (bytes: Buffer) => void | Promise<void>;

/**
 * Memory a body may be read into straight from the socket, skipping the copy out of the
 * connection's buffer (download-direct.ts: 2 GiB, ~0.35 s of the main thread).
 */
export interface BodyTarget {
  /**
   * Room for the next bytes of the body, or undefined for the connection's own buffer. Asked
   * after every read; bytes read into it come to the consumer as a view of that same memory
   * (it recognises them by buffer and offset and has nothing to copy). The room must stay the
   * consumer's until the next read or the end of the exchange.
   */
  room(): Buffer | undefined;
}

export interface Http1Response {
  readonly status: number;
  /** Lowercase names; a repeated header's values joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * Streams the body into `onData`. A promise it returns pauses the connection until it
   * settles; a throw (or a rejection) abandons the response with that error. Resolves once
   * the whole body arrived. Call it, or discard(), exactly once. With a `target`, a body of
   * known length may be read into the target's memory (see BodyTarget).
   */
  readBody(onData: BodyConsumer, target?: BodyTarget): Promise<void>;
  /** Abandons the body: the connection is closed, not reused. */
  discard(): void;
}

export interface Http1PoolOptions {
  /** http: or https: origin of the store. */
  readonly url: URL;
  readonly maxSockets: number;
  /** A connection silent this long while a request waits for bytes fails with ETIMEDOUT. */
  readonly idleTimeoutMs: number;
  /** Extra TLS options (a private CA); tests use it. */
  readonly tls?: ConnectionOptions | undefined;
  /**
   * The HTTP proxy to go through for a host (proxy.ts), if any: a CONNECT tunnel to that host
   * for https:, absolute-form requests for http:.
   */
  readonly proxyFor?: ((host: string, port: number) => ProxySettings | undefined) | undefined;
}

/** Times the longest waiter may be passed over for younger ones of a released connection's Host. */
const PASSED_OVER = 4;

/** Bytes read per socket read; one buffer per pool, reused by every socket of the pool. */
export const READ_BUFFER_SIZE = 256 * 1024;
const EMPTY = Buffer.alloc(0);
/** A response head larger than this is refused (S3 heads are well under 8 KiB). */
const MAX_HEAD_BYTES = 64 * 1024;

export class Http1Pool {
  private readonly options: Http1PoolOptions;
  /** Idle connections by the Host they were opened for (TLS checks that name). */
  private readonly idle = new Map<string, Connection[]>();
  /** Requests waiting for a connection or for room to open one, in order of arrival. */
  private readonly waiting: Waiter[] = [];
  private readonly connections = new Set<Connection>();
  private open = 0;
  private destroyed = false;
  // Safe to share: every read callback consumes its bytes before returning (see Exchange).
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  /** The proxy of each Host asked for (proxyOf). */
  private readonly proxies = new Map<string, ProxySettings | undefined>();

  constructor(options: Http1PoolOptions) {
    this.options = options;
  }

  /** Sends the request; resolves with the status and headers once the head has arrived. */
  async request(asked: Http1Request): Promise<Http1Response> {
    checkHeaders(asked);
    const host = asked.headers.host ?? this.options.url.host;
    // Through a proxy, a plain-http request names its whole URL (absolute form), and the
    // proxy's credentials go with it (a CONNECT tunnel carries them once, in proxy.ts).
    const proxy = this.options.url.protocol === "https:" ? undefined : this.proxyOf(host);
    const request =
      proxy === undefined
        ? asked
        : {
            ...asked,
            path: `http://${host}${asked.path}`,
            headers:
              proxy.authorization === undefined
                ? asked.headers
                : { ...asked.headers, "proxy-authorization": proxy.authorization },
          };
    const response = await this.exchange(host, request);
    if (proxy !== undefined && response.status === 407) {
      // The forward proxy's own answer, not the store's (a CONNECT tunnel's is in proxy.ts).
      response.discard();
      throw proxyError(
        `the proxy ${proxy.label} refused the request to ${host}: 407 Proxy Authentication Required`,
        false,
        proxy.authorization === undefined ? "missing" : "refused",
      );
    }
    return response;
  }

  private async exchange(host: string, request: Http1Request): Promise<Http1Response> {
    const firstTry = await this.acquire(host, request.signal);
    try {
      return await firstTry.send(request);
    } catch (error) {
      // A kept-alive connection the server had closed fails before any byte of an answer:
      // try once more on a new connection (GET and HEAD are idempotent).
      if (!(error instanceof StaleConnectionError)) throw error;
      const fresh = await this.acquire(host, request.signal, true);
      return fresh.send(request);
    }
  }

  /** The proxy for a Host (with its port, if any), decided once per Host. */
  private proxyOf(hostHeader: string): ProxySettings | undefined {
    const { proxyFor } = this.options;
    if (proxyFor === undefined) return undefined;
    if (this.proxies.has(hostHeader)) return this.proxies.get(hostHeader);
    const secure = this.options.url.protocol === "https:";
    const parsed = new URL(`${secure ? "https" : "http"}://${hostHeader}`);
    const port = parsed.port === "" ? (secure ? 443 : 80) : Number(parsed.port);
    const proxy = proxyFor(parsed.hostname.replace(/^\[(.*)\]$/, "$1"), port);
    this.proxies.set(hostHeader, proxy);
    return proxy;
  }

  /** Closes every connection; requests in flight and waiting fail. */
  destroy(): void {
    this.destroyed = true;
    this.idle.clear();
    for (const connection of this.connections) connection.close();
    this.failAll(new Error("the connection pool was closed"));
  }

  private async acquire(
    host: string,
    signal: AbortSignal | undefined,
    fresh = false,
  ): Promise<Connection> {
    signal?.throwIfAborted();
    if (this.destroyed) throw new Error("the connection pool was closed");
    if (!fresh) {
      // Idle while others wait: they wait for room for another host's connection (or a new
      // one), which this one cannot give them.
      const reusable = this.idle.get(host)?.pop();
      if (reusable !== undefined) return reusable;
    }
    // With others waiting, every connection is counted (room goes to them, not back to the
    // count): first come, first served.
    if (this.waiting.length === 0 && this.open < this.options.maxSockets) {
      return this.openConnection(host, false);
    }
    // At the limit (or behind others waiting: first come, first served): an idle connection
    // to another host (or, for a retry that needs a new one, to this host) makes room when
    // it closes.
    for (const [other, connections] of this.idle) {
      const spare = other === host && !fresh ? undefined : connections.pop();
      if (spare === undefined) continue;
      spare.close();
      break;
    }
    // A connection released is handed to one waiter, a closed one's room to one waiter
    // (release, closed): nobody can take either in between. Waking every waiter at each
    // change, each looking again, cost O(waiters) per request: 256 objects in flight over 64
    // sockets spent 2/3 of the CPU in wake-ups, abort listeners and their garbage (20,000
    // objects, 20 ms per request: 27 s instead of 15 s).
    const given = await new Promise<Connection | "room">((resolve, reject) => {
      const waiter: Waiter = {
        host,
        fresh,
        passed: 0,
        give: (what) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(what);
        },
        fail: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      const onAbort = () => {
        const index = this.waiting.indexOf(waiter);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
    });
    if (signal?.aborted === true) {
      // Given what it will not use (aborted as it was given): the next waiter gets it.
      if (given === "room") this.roomFreed();
      else this.release(host, given);
      signal.throwIfAborted();
    }
    if (given !== "room") return given;
    try {
      return this.openConnection(host, true);
    } catch (error) {
      this.roomFreed();
      throw error;
    }
  }

  /** `counted`: the room was handed over by a closed connection, already in `open`. */
  private openConnection(host: string, counted: boolean): Connection {
    if (!counted) this.open += 1;
    try {
      const connection = new Connection((onRead, room) => this.connect(host, onRead, room), {
        release: (done) => this.release(host, done),
        closed: (done) => this.closed(host, done),
        idleTimeoutMs: this.options.idleTimeoutMs,
      });
      this.connections.add(connection);
      return connection;
    } catch (error) {
      this.open -= 1;
      throw error;
    }
  }

  private connect(
    hostHeader: string,
    onRead: (bytes: number, buffer: Buffer) => boolean,
    room: () => Buffer | undefined,
  ): Socket {
    const { url } = this.options;
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const secure = url.protocol === "https:";
    const port = url.port === "" ? (secure ? 443 : 80) : Number(url.port);
    // A function: Node asks it for the buffer of the next read after every read.
    const onread = { buffer: () => room() ?? this.readBuffer, callback: onRead };
    const proxy = this.proxyOf(hostHeader);
    if (!secure) {
      const socket =
        proxy === undefined
          ? netConnect({ host, port, onread })
          : netConnect({ host: proxy.host, port: proxy.port, onread });
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 1000);
      return socket;
    }
    // The name for SNI and the certificate check is the Host asked for (a virtual-host
    // bucket's certificate may cover only *.endpoint), as node:https did; none for an IP.
    const name = new URL(`https://${hostHeader}`).hostname.replace(/^\[(.*)\]$/, "$1");
    // tls.connect takes `onread` like net.connect (Node >= 14.5); the types omit it.
    const socket = tlsModule().connect({
      ...this.options.tls,
      host,
      port,
      // To the Host asked for (a virtual-host bucket's own name, as the AWS CLI and s5cmd
      // do): proxies allow and check tunnels by that name, the one TLS then presents.
      ...(proxy === undefined ? {} : { socket: tunnelTo(proxy, hostHeader, port) }),
      ...(isIP(name) === 0 ? { servername: name } : {}),
      onread,
    } as ConnectionOptions);
    // TLS over a tunnel (a stream, not a socket of its own) ignores `onread` and emits 'data'.
    if (proxy !== undefined) feedOnRead(socket, onread.buffer, onRead);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 1000);
    return socket;
  }

  private release(host: string, connection: Connection): void {
    if (this.destroyed) {
      connection.close();
      return;
    }
    const waiter = this.nextWaiter(host);
    if (waiter === undefined) {
      const connections = this.idle.get(host);
      if (connections === undefined) this.idle.set(host, [connection]);
      else connections.push(connection);
    } else if (waiter.host === host && !waiter.fresh) {
      waiter.give(connection);
    } else {
      // It needs a connection of its own: this one makes room (closed() hands it on).
      this.waiting.unshift(waiter);
      connection.close();
    }
  }

  private closed(host: string, connection: Connection): void {
    this.connections.delete(connection);
    const connections = this.idle.get(host);
    const index = connections?.indexOf(connection) ?? -1;
    if (index >= 0) connections?.splice(index, 1);
    this.roomFreed();
  }

  /** One connection fewer: its room goes to the longest waiter, else the count drops. */
  private roomFreed(): void {
    const waiter = this.destroyed ? undefined : this.waiting.shift();
    if (waiter === undefined) this.open -= 1;
    else waiter.give("room");
  }

  /**
   * Takes the waiter a connection just released to `host` goes to: the longest waiter, but a
   * younger one for `host` first while the longest (for another Host: it would close this
   * connection to open its own, a TLS handshake per request with two buckets addressed by
   * virtual host) was passed over fewer than PASSED_OVER times, so that a bucket whose
   * requests keep the pool busy cannot starve another's (found in review: a second dataset's
   * single GET waited until the first one's 40,000 objects were done).
   */
  private nextWaiter(host: string): Waiter | undefined {
    const oldest = this.waiting[0];
    if (oldest === undefined) return undefined;
    if ((oldest.host !== host || oldest.fresh) && oldest.passed < PASSED_OVER) {
      const index = this.waiting.findIndex((waiter) => waiter.host === host && !waiter.fresh);
      if (index > 0) {
        oldest.passed += 1;
        return this.waiting.splice(index, 1)[0];
      }
    }
    return this.waiting.shift();
  }

  private failAll(error: Error): void {
    for (const waiter of this.waiting.splice(0)) waiter.fail(error);
  }
}

interface Waiter {
  readonly host: string;
  /** Needs a new connection (a retry after a kept-alive one turned out closed). */
  readonly fresh: boolean;
  /** Times a younger waiter was given a connection first (nextWaiter). */
  passed: number;
  give(what: Connection | "room"): void;
  fail(error: Error): void;
}

/** The request line and headers go out as latin1 text: a CR or LF would split them. */
function checkHeaders(request: Http1Request): void {
  if (!/^[!-~]+$/.test(request.path)) throw new Error(`invalid request path: ${request.path}`);
  // Own keys only (not for..in): a property added to Object.prototype by anything in the
  // process would be sent as a header (review, 2026-12-06).
  for (const name of Object.keys(request.headers)) {
    const value = request.headers[name] ?? "";
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) {
      throw new Error(`invalid request header: ${name}`);
    }
  }
}

/** A CONNECT tunnel through `proxy` to the host (and port, else `port`) of a Host header. */
function tunnelTo(proxy: ProxySettings, hostHeader: string, port: number): ProxyTunnel {
  const parsed = new URL(`https://${hostHeader}`);
  const name = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  return new ProxyTunnel(proxy, name, parsed.port === "" ? port : Number(parsed.port));
}

/**
 * Hands a socket's 'data' chunks to an `onread`-style callback, copied into the buffer it
 * names: for TLS over a proxy tunnel, where Node does not honour `onread`. Like `onread`, a
 * callback that returns false pauses the socket; the rest of that chunk goes back to the
 * front of the stream, handed on when it is resumed.
 */
function feedOnRead(
  socket: Socket,
  buffer: () => Buffer,
  onRead: (bytes: number, buffer: Buffer) => boolean,
): void {
  socket.on("data", (chunk: Buffer) => {
    let offset = 0;
    while (offset < chunk.length) {
      const target = buffer();
      const bytes = chunk.copy(target, 0, offset);
      offset += bytes;
      if (!onRead(bytes, target)) {
        socket.pause();
        // Back at the front of the stream: handed on first once resumed, and the stream's
        // end waits for it.
        if (offset < chunk.length) socket.unshift(chunk.subarray(offset));
        return;
      }
    }
  });
}

/** Thrown when a reused connection turns out closed before any byte of an answer. */
class StaleConnectionError extends Error {}

function networkError(message: string, code: string): NodeJS.ErrnoException {
  const error = new Error(message) as NodeJS.ErrnoException;
  error.code = code;
  return error;
}

interface ConnectionHooks {
  release(connection: Connection): void;
  closed(connection: Connection): void;
  readonly idleTimeoutMs: number;
}

/**
 * Bytes an exchange must receive per idle-timeout window (30 s by default: ~2 KiB/s) while
 * dsfetch is ready to read, unless the response ends: the idle timeout alone catches a
 * server that sends nothing, not one that trickles a byte a second (review, 2026-12-05: a
 * listing page at 1 B/s held a fetch for ~59 hours, silent, and every waiting worker for the
 * 2-hour lock wait; a ranged GET at 1 KB/s failed the dataset as STALLED after 300 s instead
 * of being resumed on a new connection). Failed as ETIMEDOUT: retried, and resumed, as a
 * stall is.
 */
export const MIN_BYTES_PER_WINDOW = 64 * 1024;

/** One socket and the exchange (request and response) in progress on it. */
class Connection {
  private readonly socket: Socket;
  private readonly hooks: ConnectionHooks;
  private exchange: Exchange | undefined;
  private served = 0;
  private isClosed = false;
  private socketError: Error | undefined;
  /** Holds body bytes that come with the head, until the caller reads the body. */
  private spare: Buffer | undefined;
  /** The slow-transfer check (MIN_BYTES_PER_WINDOW): bytes since its last look, and whether
   * dsfetch itself held the socket paused meanwhile (a busy disk is not a slow server). */
  private slowCheck: NodeJS.Timeout | undefined;
  private windowBytes = 0;
  private paused = false;
  private pausedInWindow = false;
  private headWindows = 0;

  constructor(
    open: (
      onRead: (bytes: number, buffer: Buffer) => boolean,
      room: () => Buffer | undefined,
    ) => Socket,
    hooks: ConnectionHooks,
  ) {
    this.socket = open(
      (bytes, buffer) => this.onRead(bytes, buffer),
      () => this.exchange?.room(),
    );
    this.hooks = hooks;
    const socket = this.socket;
    socket.on("error", (error) => {
      this.socketError = error;
    });
    socket.on("close", () => {
      this.isClosed = true;
      this.stopSlowCheck();
      const exchange = this.exchange;
      this.exchange = undefined;
      if (exchange !== undefined) {
        if (this.socketError === undefined) exchange.closed(this.served > 0);
        else exchange.fail(this.socketError, this.served > 0);
      }
      this.hooks.closed(this);
    });
    socket.on("timeout", () => {
      const seconds = this.hooks.idleTimeoutMs / 1000;
      this.socket.destroy(networkError(`no data for ${seconds} s`, "ETIMEDOUT"));
    });
  }

  send(request: Http1Request): Promise<Http1Response> {
    if (this.isClosed) {
      return Promise.reject(new StaleConnectionError("the kept-alive connection was closed"));
    }
    const exchange = new Exchange(request, {
      pause: () => {
        this.markPaused();
        this.socket.pause();
      },
      spare: () => {
        this.spare ??= Buffer.allocUnsafe(READ_BUFFER_SIZE);
        return this.spare;
      },
      resume: () => {
        this.paused = false;
        if (this.isClosed) return;
        // The idle timeout, off while we held the socket (markPaused), runs again.
        if (this.exchange === exchange) this.socket.setTimeout(this.hooks.idleTimeoutMs);
        this.socket.resume();
      },
      done: (reusable) => this.finish(exchange, reusable),
      abandon: (error) => this.socket.destroy(error),
    });
    this.exchange = exchange;
    this.socket.ref();
    this.socket.setTimeout(this.hooks.idleTimeoutMs);
    this.startSlowCheck(exchange);
    this.paused = false;
    this.socket.resume();
    let text = `${request.method} ${request.path} HTTP/1.1\r\n`;
    for (const name of Object.keys(request.headers))
      text += `${name}: ${request.headers[name]}\r\n`;
    this.socket.write(`${text}\r\n`, "latin1");
    return exchange.head;
  }

  close(): void {
    this.socket.destroy();
  }

  /**
   * dsfetch holds the socket (a slow disk's back-pressure, a body not read yet): the server
   * cannot send, so its silence is ours, and the idle timeout is off until resume (review,
   * 2026-12-06: a write stalled longer than the timeout failed every range in flight with
   * ETIMEDOUT, blamed on the store, each then fetched again).
   */
  private markPaused(): void {
    this.paused = true;
    this.pausedInWindow = true;
    this.socket.setTimeout(0);
  }

  /** Every idle-timeout window of the exchange: enough bytes, or the response ended. */
  private startSlowCheck(exchange: Exchange): void {
    this.stopSlowCheck();
    this.windowBytes = 0;
    this.pausedInWindow = false;
    this.headWindows = 0;
    const windowMs = this.hooks.idleTimeoutMs;
    this.slowCheck = setInterval(() => {
      if (this.exchange !== exchange) {
        this.stopSlowCheck();
        return;
      }
      const received = this.windowBytes;
      const ours = this.paused || this.pausedInWindow;
      this.windowBytes = 0;
      this.pausedInWindow = this.paused;
      if (ours) return;
      const seconds = windowMs / 1000;
      const wire = exchange.wireState();
      if (wire === "head") {
        // Bytes of the head came, but not all of it within a whole window: a server sends a
        // head (well under 8 KiB) at once.
        if (exchange.headStarted()) this.headWindows += 1;
        if (this.headWindows >= 2) {
          this.socket.destroy(
            networkError(`the response head took more than ${seconds} s to arrive`, "ETIMEDOUT"),
          );
        }
      } else if (wire === "body" && received < MIN_BYTES_PER_WINDOW) {
        this.socket.destroy(
          networkError(
            `only ${received} bytes in ${seconds} s (slower than ${Math.round(MIN_BYTES_PER_WINDOW / seconds)} bytes/s)`,
            "ETIMEDOUT",
          ),
        );
      }
    }, windowMs);
    this.slowCheck.unref();
  }

  private stopSlowCheck(): void {
    if (this.slowCheck !== undefined) clearInterval(this.slowCheck);
    this.slowCheck = undefined;
  }

  private onRead(bytes: number, buffer: Buffer): boolean {
    const exchange = this.exchange;
    if (exchange === undefined) {
      // Bytes nobody asked for: the server is confused; never reuse this connection.
      this.socket.destroy(networkError("unexpected bytes from the server", "ECONNRESET"));
      return false;
    }
    this.windowBytes += bytes;
    const more = exchange.receive(buffer.subarray(0, bytes));
    if (!more) this.markPaused();
    return more;
  }

  private finish(exchange: Exchange, reusable: boolean): void {
    if (this.exchange !== exchange) return;
    this.exchange = undefined;
    this.served += 1;
    this.stopSlowCheck();
    this.socket.setTimeout(0);
    if (!reusable || this.isClosed) {
      this.socket.destroy();
      return;
    }
    this.socket.unref();
    this.hooks.release(this);
  }
}

interface ExchangeHooks {
  pause(): void;
  /** The connection's buffer for early body bytes (one exchange at a time uses it). */
  spare(): Buffer;
  resume(): void;
  /** The response ended; `reusable` when the connection can carry another request. */
  done(reusable: boolean): void;
  abandon(error: Error): void;
}

type Framing =
  | { kind: "none" }
  | { kind: "length"; left: number }
  | { kind: "chunked" }
  | { kind: "close" };

/**
 * One request's response, fed by the connection's reads: the head, then the body to the
 * consumer. The wire (bytes from the server) and the consumer (readBody's callback) fail or
 * finish independently; readBody() settles once both are done, with the first error.
 */
class Exchange {
  readonly head: Promise<Http1Response>;
  private resolveHead!: (response: Http1Response) => void;
  private rejectHead!: (error: unknown) => void;
  private readonly request: Http1Request;
  private readonly hooks: ExchangeHooks;
  private wire: "head" | "body" | "ended" | "failed" = "head";
  private headBytes: Buffer = EMPTY;
  private receivedAny = false;
  private framing: Framing = { kind: "none" };
  private keepAlive = true;
  private readonly chunked = new ChunkedDecoder();
  private consumer: BodyConsumer | undefined;
  private target: BodyTarget | undefined;
  /** Body bytes that came before readBody() was called (copied), and how many. */
  private early: Buffer | undefined;
  private earlyLength = 0;
  /** The consumer's promises not yet settled. */
  private waits = 0;
  private error: unknown;
  private body: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  private readonly onAbort: () => void;

  constructor(request: Http1Request, hooks: ExchangeHooks) {
    this.request = request;
    this.hooks = hooks;
    this.head = new Promise<Http1Response>((resolve, reject) => {
      this.resolveHead = resolve;
      this.rejectHead = reject;
    });
    this.onAbort = () => this.hooks.abandon(asError(request.signal?.reason));
    if (request.signal?.aborted) queueMicrotask(this.onAbort);
    else request.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /**
   * Where the next read may go: the consumer's memory while a body of known length is being
   * read, else undefined (the connection's buffer). Never the body's last byte: the read that
   * brings it into the connection's buffer also shows whether the server sent more than the
   * body (then the connection is not reused), as without a target.
   */
  room(): Buffer | undefined {
    if (this.wire !== "body" || this.target === undefined || this.error !== undefined) {
      return undefined;
    }
    const framing = this.framing;
    if (framing.kind !== "length") return undefined;
    const most = framing.left - 1;
    if (most <= 0) return undefined;
    const room = this.target.room();
    if (room === undefined || room.length === 0) return undefined;
    return room.length > most ? room.subarray(0, most) : room;
  }

  /** Where the response stands, for the connection's slow-transfer check. */
  wireState(): "head" | "body" | "ended" | "failed" {
    return this.wire;
  }

  /** Whether any byte of the head came. */
  headStarted(): boolean {
    return this.receivedAny;
  }

  /** Bytes of the response (a view of the shared read buffer); false pauses the socket. */
  receive(view: Buffer): boolean {
    if (this.wire === "ended" || this.wire === "failed") {
      // More than the response: the connection cannot be trusted with another request.
      this.keepAlive = false;
      return true;
    }
    let rest = view;
    try {
      if (this.wire === "head") {
        rest = this.readHead(view);
        if ((this.wire as string) === "head") return true;
        if (this.framing.kind === "none") {
          if (rest.length > 0) this.keepAlive = false;
          this.endWire();
          return true;
        }
      }
      if (this.consumer === undefined) {
        // readBody() not called yet: keep a copy; the socket waits for it.
        // (Small objects always come whole with their head: the copy goes into the
        // connection's spare buffer rather than a new one each time.)
        if (rest.length > 0) this.keepEarly(rest);
        this.hooks.pause();
        return false;
      }
      this.feed(rest);
    } catch (error) {
      this.failWire(error);
      return false;
    }
    return this.waits === 0;
  }

  /** The server closed the connection (no socket error). */
  closed(reused: boolean): void {
    if (this.wire === "body" && this.framing.kind === "close") {
      // A body without a length ends when the connection does.
      this.endWire();
      return;
    }
    const at =
      this.wire === "head"
        ? "before the response head"
        : this.framing.kind === "length"
          ? `with ${this.framing.left} bytes of the body still to come`
          : "before the end of the body";
    this.fail(networkError(`the server closed the connection ${at}`, "ECONNRESET"), reused);
  }

  /** The connection failed; `reused`: it had served an earlier response. */
  fail(error: unknown, reused: boolean): void {
    if (this.wire === "ended" || this.wire === "failed") return;
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    const stale =
      this.wire === "head" &&
      !this.receivedAny &&
      reused &&
      !this.request.signal?.aborted &&
      (code === "ECONNRESET" || code === "EPIPE");
    this.wire = "failed";
    this.request.signal?.removeEventListener("abort", this.onAbort);
    this.error ??= this.request.signal?.aborted ? this.request.signal.reason : error;
    this.rejectHead(stale ? new StaleConnectionError(String(error)) : this.error);
    this.settle();
  }

  private failWire(error: unknown): void {
    this.fail(error, false);
    this.hooks.abandon(asError(this.error));
  }

  private readHead(view: Buffer): Buffer {
    if (view.length > 0) this.receivedAny = true;
    const searchFrom = Math.max(0, this.headBytes.length - 3);
    // Usually the whole head is in one read: parsed from the view, nothing copied.
    const bytes = this.headBytes.length === 0 ? view : Buffer.concat([this.headBytes, view]);
    const end = bytes.indexOf("\r\n\r\n", searchFrom, "latin1");
    if ((end < 0 ? bytes.length : end) > MAX_HEAD_BYTES) {
      throw networkError("the response head is larger than 64 KiB", "EPROTO");
    }
    if (end < 0) {
      this.headBytes = bytes === view ? Buffer.from(view) : bytes;
      return Buffer.alloc(0);
    }
    const text = bytes.toString("latin1", 0, end);
    const rest = bytes.subarray(end + 4);
    this.headBytes = EMPTY;
    const lines = text.split("\r\n");
    const statusLine = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
    if (statusLine === null) {
      throw networkError(`not an HTTP/1.1 response: ${JSON.stringify(lines[0])}`, "EPROTO");
    }
    const status = Number(statusLine[2]);
    if (status >= 100 && status < 200) {
      // 100 Continue and other interim answers: the real one follows.
      return this.readHead(rest);
    }
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw networkError(`malformed response header: ${line}`, "EPROTO");
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    this.framing = framingOf(this.request.method, status, headers);
    const connection = (headers.connection ?? "").toLowerCase();
    this.keepAlive =
      this.framing.kind !== "close" &&
      (statusLine[1] === "1" ? !connection.includes("close") : connection.includes("keep-alive"));
    this.wire = "body";
    this.resolveHead({
      status,
      headers,
      readBody: (onData, target) => this.readBody(onData, target),
      discard: () => this.discard(),
    });
    return rest;
  }

  private readBody(onData: BodyConsumer, target: BodyTarget | undefined): Promise<void> {
    if (this.body !== undefined) return Promise.reject(new Error("readBody() called twice"));
    const promise = new Promise<void>((resolve, reject) => {
      this.body = { resolve, reject };
    });
    this.consumer = onData;
    this.target = target;
    const early = this.early?.subarray(0, this.earlyLength);
    this.early = undefined;
    this.earlyLength = 0;
    try {
      if (early !== undefined) this.feed(early);
    } catch (error) {
      this.failWire(error);
    }
    this.settle();
    if (this.wire === "body" && this.waits === 0) this.hooks.resume();
    return promise;
  }

  private keepEarly(bytes: Buffer): void {
    const needed = this.earlyLength + bytes.length;
    this.early ??= this.hooks.spare();
    if (needed > this.early.length) {
      const bigger = Buffer.allocUnsafe(needed);
      this.early.copy(bigger, 0, 0, this.earlyLength);
      this.early = bigger;
    }
    bytes.copy(this.early, this.earlyLength);
    this.earlyLength = needed;
  }

  private discard(): void {
    if (this.body !== undefined) return;
    this.body = { resolve: () => {}, reject: () => {} };
    if (this.wire === "body") this.failWire(new Error("the response body was discarded"));
  }

  /** Body bytes in framing order, to the consumer; the end of the body ends the wire. */
  private feed(view: Buffer): void {
    let rest = view;
    while (rest.length > 0 && this.wire === "body") {
      const framing = this.framing;
      if (framing.kind === "length") {
        const take = Math.min(framing.left, rest.length);
        framing.left -= take;
        this.deliver(rest.subarray(0, take));
        rest = rest.subarray(take);
        if (framing.left === 0) this.endBody(rest);
      } else if (framing.kind === "chunked") {
        rest = this.chunked.decode(rest, (bytes) => this.deliver(bytes));
        if (this.chunked.finished) this.endBody(rest);
      } else if (framing.kind === "close") {
        this.deliver(rest);
        rest = Buffer.alloc(0);
      } else {
        break;
      }
    }
  }

  /** The body is complete; `after` is what came after it in the same read. */
  private endBody(after: Buffer): void {
    // Bytes after the end of the body: the connection cannot be trusted with another request.
    if (after.length > 0) this.keepAlive = false;
    this.endWire();
  }

  private deliver(bytes: Buffer): void {
    if (bytes.length === 0 || this.consumer === undefined || this.error !== undefined) return;
    let result: void | Promise<void>;
    try {
      result = this.consumer(bytes);
    } catch (error) {
      this.consumerFailed(error);
      return;
    }
    if (result === undefined) return;
    this.waits += 1;
    result.then(
      () => {
        this.waits -= 1;
        if (this.waits > 0) return;
        if (this.wire === "body") this.hooks.resume();
        this.settle();
      },
      (error: unknown) => {
        this.waits -= 1;
        this.consumerFailed(error);
      },
    );
  }

  private consumerFailed(error: unknown): void {
    this.error ??= error;
    // The rest of the body is not wanted: the connection goes.
    if (this.wire === "body") this.failWire(error);
    else this.settle();
  }

  /** The last byte of the response arrived. */
  private endWire(): void {
    if (this.wire !== "body") return;
    this.wire = "ended";
    this.request.signal?.removeEventListener("abort", this.onAbort);
    // The connection goes back to the pool now (unless the consumer already failed); the
    // caller's promise settles once the consumer has taken everything.
    this.hooks.done(this.keepAlive && this.error === undefined);
    this.settle();
  }

  /** Settles readBody() once the wire is done and the consumer too, or at the first error. */
  private settle(): void {
    const body = this.body;
    if (body === undefined) return;
    if (this.error !== undefined) {
      body.reject(this.error);
    } else if (this.wire === "ended" && this.waits === 0) {
      body.resolve();
    }
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

function framingOf(method: string, status: number, headers: Record<string, string>): Framing {
  if (method === "HEAD" || status === 204 || status === 304) return { kind: "none" };
  if ((headers["transfer-encoding"] ?? "").toLowerCase().includes("chunked")) {
    return { kind: "chunked" };
  }
  const length = headers["content-length"];
  if (length !== undefined) {
    if (!/^\d+$/.test(length)) {
      throw networkError(`invalid Content-Length: ${length}`, "EPROTO");
    }
    const left = Number(length);
    return left === 0 ? { kind: "none" } : { kind: "length", left };
  }
  return { kind: "close" };
}

/** Transfer-Encoding: chunked (RFC 9112 §7.1), fed in pieces of any size. */
class ChunkedDecoder {
  finished = false;
  private state: "size" | "data" | "data-end" | "trailer" = "size";
  private line = "";
  private left = 0;

  /** Passes data to `deliver`; returns what follows the end of the body, if anything. */
  decode(input: Buffer, deliver: (bytes: Buffer) => void): Buffer {
    let at = 0;
    while (at < input.length && !this.finished) {
      if (this.state === "data") {
        const take = Math.min(this.left, input.length - at);
        deliver(input.subarray(at, at + take));
        at += take;
        this.left -= take;
        if (this.left === 0) this.state = "data-end";
        continue;
      }
      const newline = input.indexOf(10, at);
      const end = newline < 0 ? input.length : newline;
      this.line += input.toString("latin1", at, end);
      if (this.line.length > 4096) throw networkError("a chunk header is too long", "EPROTO");
      at = end;
      if (newline < 0) break;
      at += 1;
      const line = this.line.replace(/\r$/, "");
      this.line = "";
      if (this.state === "size") {
        const size = /^([0-9a-fA-F]{1,12})(?:\s*;.*)?$/.exec(line);
        if (size === null) throw networkError(`invalid chunk size: ${line}`, "EPROTO");
        this.left = Number.parseInt(size[1] as string, 16);
        this.state = this.left === 0 ? "trailer" : "data";
      } else if (this.state === "data-end") {
        if (line !== "") throw networkError("a chunk does not end with CRLF", "EPROTO");
        this.state = "size";
      } else if (line === "") {
        this.finished = true;
      }
    }
    return input.subarray(at);
  }
}
