/**
 * HTTP proxies, as the AWS CLI, s5cmd (Go's ProxyFromEnvironment) and curl read them: where a
 * cluster reaches S3 only through an egress proxy, dsfetch connected directly and could not
 * reach the store at all.
 *
 * - Which proxy: HTTPS_PROXY (or https_proxy) for https:// stores, HTTP_PROXY (or http_proxy)
 *   for http:// ones (ALL_PROXY is not read: Go and botocore do not, and it is often a SOCKS
 *   proxy for other tools); none for `localhost` and loopback addresses (as Go), nor for a
 *   host NO_PROXY (no_proxy) names: `*`, a host or IP address (with an optional `:port`), a
 *   domain (`example.com` or `.example.com`: it and its subdomains) or an IP range
 *   (`10.0.0.0/8`). Decided per host: a virtual-host bucket's own name counts.
 * - How: an https:// store through a CONNECT tunnel (TLS end to end, the proxy sees only the
 *   host name); an http:// store by sending the requests to the proxy in absolute form.
 * - Proxies are http:// URLs (`host:port` alone too); credentials in them
 *   (`http://user:password@host:port`) go in Proxy-Authorization, never in a message.
 */
import { BlockList, isIP, connect as netConnect, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { DsfetchError } from "../errors.ts";

export interface ProxySettings {
  /** The proxy's host name or address (no brackets) and port. */
  readonly host: string;
  readonly port: number;
  /** `Basic …` when the proxy URL carries credentials. */
  readonly authorization: string | undefined;
  /** For messages: scheme, host and port, never the credentials. */
  readonly label: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The proxy to reach `host:port` through (a store's endpoint, or a virtual-host bucket's own
 * host name), or undefined: directly.
 */
export function proxyFor(
  host: string,
  port: number,
  secure: boolean,
  env: Env,
): ProxySettings | undefined {
  const chosen = secure
    ? first(env, ["HTTPS_PROXY", "https_proxy"])
    : first(env, ["HTTP_PROXY", "http_proxy"]);
  if (chosen === undefined) return undefined;
  const name = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (isLoopback(name)) return undefined;
  if (bypassed(name, port, first(env, ["NO_PROXY", "no_proxy"])?.value ?? "")) return undefined;
  return parseProxy(chosen.value, chosen.name);
}

/** Checks the https proxy setting (USAGE when malformed) without deciding for any host. */
export function checkHttpsProxy(env: Env): void {
  const chosen = first(env, ["HTTPS_PROXY", "https_proxy"]);
  if (chosen !== undefined) parseProxy(chosen.value, chosen.name);
}

function isLoopback(host: string): boolean {
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  // As addresses: `[::ffff:127.0.0.1]`, which URLs write `[::ffff:7f00:1]`, is loopback too.
  return (
    inRange(host, "127.0.0.0/8") || inRange(host, "::1/128") || inRange(host, "::ffff:7f00:0/104")
  );
}

function first(env: Env, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value !== undefined && value !== "") return { name, value };
  }
  return undefined;
}

function parseProxy(text: string, variable: string): ProxySettings {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    throw badProxy(variable, "is not a URL");
  }
  if (url.protocol !== "http:") {
    throw badProxy(
      variable,
      `uses ${url.protocol.replace(/:$/, "")}://, and dsfetch speaks to proxies in plain http:// only (the tunnel to an https:// store is TLS end to end all the same)`,
    );
  }
  if (url.hostname === "") throw badProxy(variable, "names no host");
  let user: string;
  let password: string;
  try {
    user = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch {
    throw badProxy(variable, "has a badly %-encoded user or password");
  }
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? 80 : Number(url.port),
    authorization:
      user === "" && password === ""
        ? undefined
        : `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
    label: `http://${url.host}`,
  };
}

function badProxy(variable: string, problem: string): DsfetchError {
  // Never the value: it may hold credentials.
  return new DsfetchError("USAGE", `the proxy in ${variable} ${problem}`, {
    hint: `give it as http://host:port (http://user:password@host:port with credentials), or unset ${variable}`,
  });
}

/** Whether NO_PROXY's list names this host (and port). */
export function bypassed(host: string, port: number, list: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  for (const raw of list.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return true;
    if (entry.includes("/")) {
      if (inRange(name, entry)) return true;
      continue;
    }
    let pattern = entry;
    let entryPort: number | undefined;
    const bracketed = /^\[(.*)\](?::(\d+))?$/.exec(entry);
    if (bracketed !== null) {
      pattern = bracketed[1] ?? "";
      entryPort = bracketed[2] === undefined ? undefined : Number(bracketed[2]);
    } else if (isIP(entry) === 0) {
      const withPort = /^(.*):(\d+)$/.exec(entry);
      if (withPort !== null) {
        pattern = withPort[1] ?? "";
        entryPort = Number(withPort[2]);
      }
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    pattern = pattern.replace(/^\*?\./, "").replace(/\.$/, "");
    if (pattern === "") continue;
    // An address names one host however it is written (`fd00:0:0::1` is the endpoint
    // `[fd00::1]`, which URLs write compressed): compared as addresses, not as text.
    const family = isIP(pattern);
    if (family !== 0) {
      if (inRange(name, `${pattern}/${family === 4 ? 32 : 128}`)) return true;
      continue;
    }
    if (name === pattern || (isIP(name) === 0 && name.endsWith(`.${pattern}`))) return true;
  }
  return false;
}

function inRange(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split("/");
  const family = isIP(base ?? "");
  if (family === 0 || isIP(address) !== family || !/^\d+$/.test(bits ?? "")) return false;
  const list = new BlockList();
  try {
    list.addSubnet(base as string, Number(bits), family === 4 ? "ipv4" : "ipv6");
  } catch {
    return false;
  }
  return list.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** Bytes of a proxy's answer to CONNECT read at most before giving up on it. */
const MAX_ANSWER_HEAD = 16 * 1024;

/**
 * A CONNECT tunnel through the proxy to `host:port`, as a stream TLS runs over: writes wait
 * until the proxy said 2xx, and its answer is never seen by TLS. A refusal (407, 403, 502…)
 * destroys it with an error of code EPROXY (s3-errors.ts says what to check).
 */
export class ProxyTunnel extends Duplex {
  private readonly raw: Socket;
  private open = false;
  private head = Buffer.alloc(0);
  private pending: { chunk: Buffer; callback: (error?: Error | null) => void }[] = [];

  constructor(proxy: ProxySettings, host: string, port: number) {
    // Not half-open: the server's end of the stream ends the TLS socket, which then closes
    // (a default Duplex left it open until the idle bound).
    super({ allowHalfOpen: false });
    const authority = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    this.raw = netConnect({ host: proxy.host, port: proxy.port });
    this.raw.setNoDelay(true);
    this.raw.setKeepAlive(true, 1000);
    const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
    if (proxy.authorization !== undefined) {
      lines.push(`Proxy-Authorization: ${proxy.authorization}`);
    }
    this.raw.write(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
    this.raw.on("data", (chunk: Buffer) => this.received(chunk, proxy, authority));
    this.raw.on("error", (error: NodeJS.ErrnoException) => {
      // Before the tunnel is open, about the proxy, not the store (a proxy host that does
      // not resolve is a setting to fix; one that refuses or resets may come back).
      if (this.open) this.destroy(error);
      else {
        const transient = error.code !== "ENOTFOUND";
        this.destroy(
          proxyError(
            `cannot reach the proxy ${proxy.label}: ${error.code ?? error.message}`,
            transient,
          ),
        );
      }
    });
    this.raw.on("end", () => {
      if (this.open) this.push(null);
      else
        this.destroy(
          proxyError(
            `the proxy ${proxy.label} closed the connection before it answered CONNECT ${authority}`,
            true,
          ),
        );
    });
    this.raw.on("close", () => {
      if (this.destroyed) return;
      if (!this.open)
        this.destroy(proxyError(`the proxy ${proxy.label} closed the connection`, true));
      else {
        this.push(null);
        this.destroy();
      }
    });
  }

  private received(chunk: Buffer, proxy: ProxySettings, authority: string): void {
    if (this.open) {
      if (!this.push(chunk)) this.raw.pause();
      return;
    }
    this.head = Buffer.concat([this.head, chunk]);
    const end = this.head.indexOf("\r\n\r\n");
    if (end < 0) {
      if (this.head.length > MAX_ANSWER_HEAD) {
        this.destroy(proxyError(`the proxy ${proxy.label} sent no answer to CONNECT`, false));
      }
      return;
    }
    const statusLine = this.head.toString("latin1", 0, this.head.indexOf("\r\n"));
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? Number.NaN);
    if (!(status >= 200 && status < 300)) {
      const reason = statusLine.replace(/[^\x20-\x7e]/g, "").slice(0, 200);
      this.destroy(
        proxyError(
          `the proxy ${proxy.label} refused the tunnel to ${authority}: ${reason || "no status"}`,
          // Not an HTTP answer at all (a SOCKS or TLS port): retrying cannot help.
          status >= 500,
          status === 407 ? (proxy.authorization === undefined ? "missing" : "refused") : undefined,
        ),
      );
      return;
    }
    this.open = true;
    const rest = this.head.subarray(end + 4);
    this.head = Buffer.alloc(0);
    const pending = this.pending;
    this.pending = [];
    for (const { chunk: bytes, callback } of pending) this.raw.write(bytes, callback);
    if (rest.length > 0) this.push(rest);
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    if (this.open) this.raw.write(chunk, callback);
    else this.pending.push({ chunk, callback });
  }

  override _read(): void {
    this.raw.resume();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.raw.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.raw.destroy();
    for (const { callback: written } of this.pending) written(error ?? new Error("closed"));
    this.pending = [];
    callback(error);
  }
}

/**
 * An error of the proxy itself: code EPROXY; `retryable` for its 5xx and lost connections;
 * `authentication` when it asked for credentials (407): none were given, or they were refused.
 */
export function proxyError(
  message: string,
  retryable: boolean,
  authentication?: "missing" | "refused",
): Error & { code: string; retryable: boolean; authentication: string | undefined } {
  return Object.assign(new Error(message), { code: "EPROXY", retryable, authentication });
}
