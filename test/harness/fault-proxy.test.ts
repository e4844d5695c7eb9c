// The fault proxy itself: it forwards bytes exactly, accounts for them per request over
// keep-alive connections, fires each fault at its offset, throttles, rewrites responses, and
// keeps SigV4 signatures valid in front of the real S3 server.
import { createHash, randomBytes } from "node:crypto";
import { Agent, createServer, request, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type FaultProxy,
  injectListEntries,
  isListObjectsV2,
  startFaultProxy,
} from "./fault-proxy.ts";
import { createBucket, putObject, s3Info } from "./s3.ts";

const BLOB = randomBytes(2 * 1024 * 1024 + 17);
const CHUNKS = [randomBytes(1000), randomBytes(70_000), randomBytes(5)];

let server: Server;
let origin: string;
let proxy: FaultProxy;

beforeAll(async () => {
  server = createServer((req, res) => {
    // Responses must be byte-for-byte repeatable: no Date header.
    res.sendDate = false;
    if (req.url === "/blob") {
      res.writeHead(200, { "content-length": BLOB.length });
      res.end(req.method === "HEAD" ? undefined : BLOB);
    } else if (req.url === "/chunked" || req.url === "/list?list-type=2") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      // No Content-Length: node sends these as chunks.
      for (const chunk of CHUNKS) res.write(chunk);
      res.end();
    } else if (req.url === "/echo") {
      let n = 0;
      req.on("data", (chunk: Buffer) => {
        n += chunk.length;
      });
      req.on("end", () => res.end(`got ${n}`));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  origin = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

afterEach(async () => {
  await proxy?.close();
});

interface Exchange {
  data: Buffer;
  /** The server side ended cleanly (FIN). */
  ended: boolean;
  errorCode: string | undefined;
  /** ms from the start at which the total received first exceeded each watched offset. */
  reached: Map<number, number>;
}

/** Sends raw request text over a new connection and collects everything until it closes. */
function exchange(port: number, text: string, watch: number[] = []): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    let received = 0;
    const result: Exchange = {
      data: Buffer.alloc(0),
      ended: false,
      errorCode: undefined,
      reached: new Map(),
    };
    const socket: Socket = connect({ host: "127.0.0.1", port }, () => socket.write(text));
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      for (const offset of watch) {
        if (received > offset && !result.reached.has(offset)) {
          result.reached.set(offset, performance.now() - started);
        }
      }
    });
    socket.on("end", () => {
      result.ended = true;
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      result.errorCode = error.code;
    });
    socket.on("close", () => {
      result.data = Buffer.concat(chunks);
      resolve(result);
    });
  });
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n`;

/** The bytes a direct (unproxied) connection receives for the same request. */
async function direct(path: string): Promise<Buffer> {
  return (await exchange(Number(new URL(origin).port), get(path))).data;
}

function httpCall(
  agent: Agent,
  method: string,
  path: string,
  body?: Buffer,
): Promise<{ status: number; body: Buffer; socketRead: number; socketWritten: number }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${proxy.endpoint}${path}`,
      { method, agent, headers: body ? { "content-length": body.length } : {} },
      (res) => {
        const socket = res.socket;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks),
            socketRead: socket.bytesRead,
            socketWritten: socket.bytesWritten,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("fault proxy", () => {
  it("forwards every byte and accounts for each request on a keep-alive connection", async () => {
    proxy = await startFaultProxy(origin);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const upload = randomBytes(100_000);
      const a = await httpCall(agent, "GET", "/blob");
      const b = await httpCall(agent, "HEAD", "/blob");
      const c = await httpCall(agent, "POST", "/echo", upload);
      const d = await httpCall(agent, "GET", "/chunked");
      const e = await httpCall(agent, "GET", "/blob");
      expect(a.body.equals(BLOB)).toBe(true);
      expect(b.status).toBe(200);
      expect(b.body.length).toBe(0);
      expect(c.body.toString()).toBe(`got ${upload.length}`);
      expect(d.body.equals(Buffer.concat(CHUNKS))).toBe(true);
      expect(e.body.equals(BLOB)).toBe(true);
      // One socket carried everything: the proxy counted exactly what it read and wrote.
      expect(proxy.bytesToClient).toBe(e.socketRead);
      expect(proxy.bytesToServer).toBe(e.socketWritten);
      expect(
        proxy.requests.map((r) => [r.connection, r.method, r.target, r.status, r.complete]),
      ).toEqual([
        [0, "GET", "/blob", 200, true],
        [0, "HEAD", "/blob", 200, true],
        [0, "POST", "/echo", 200, true],
        [0, "GET", "/chunked", 200, true],
        [0, "GET", "/blob", 200, true],
      ]);
      const [getA, head, , chunked, getE] = proxy.requests;
      expect(getA?.bodyBytes).toBe(BLOB.length);
      expect(head?.bodyBytes).toBe(0);
      expect(getE?.bodyBytes).toBe(BLOB.length);
      // Chunked bodies are counted on the wire: payload plus framing.
      const payload = CHUNKS.reduce((n, chunk) => n + chunk.length, 0);
      expect(chunked?.bodyBytes).toBeGreaterThan(payload);
      expect(chunked?.bodyBytes).toBeLessThan(payload + 100);
      expect(proxy.getBodyBytes()).toBe(2 * BLOB.length + (chunked?.bodyBytes ?? 0));
      proxy.resetCounters();
      expect([proxy.bytesToClient, proxy.getBodyBytes(), proxy.requests.length]).toEqual([0, 0, 0]);
    } finally {
      agent.destroy();
    }
  });

  it("cuts a connection with a FIN after exactly `offset` bytes", async () => {
    proxy = await startFaultProxy(origin);
    const offset = 1_000_003;
    proxy.cutAt(offset);
    const full = await direct("/blob");
    const got = await exchange(proxy.port, get("/blob"));
    expect(got.errorCode).toBeUndefined();
    expect(got.ended).toBe(true);
    expect(got.data.equals(full.subarray(0, offset))).toBe(true);
    expect(proxy.bytesToClient).toBe(offset);
    expect(proxy.firedFaults).toMatchObject([{ kind: "cut", offset, connection: 0 }]);
    expect(proxy.firedFaults[0]?.request?.target).toBe("/blob");
    expect(proxy.requests[0]?.complete).toBe(false);
    expect(proxy.pendingFaults).toBe(0);
  });

  it("resets a connection (RST) after exactly `offset` bytes", async () => {
    proxy = await startFaultProxy(origin);
    const offset = 700_001;
    proxy.resetAt(offset);
    const full = await direct("/blob");
    const got = await exchange(proxy.port, get("/blob"));
    expect(got.errorCode).toBe("ECONNRESET");
    expect(got.ended).toBe(false);
    expect(got.data.equals(full.subarray(0, offset))).toBe(true);
    expect(proxy.bytesToClient).toBe(offset);
    expect(proxy.firedFaults).toMatchObject([{ kind: "reset", offset }]);
  });

  it("resets at once with drainMs 0 (bytes still in flight may be lost)", async () => {
    proxy = await startFaultProxy(origin);
    const offset = 900_000;
    proxy.resetAt(offset, 0);
    const full = await direct("/blob");
    const got = await exchange(proxy.port, get("/blob"));
    expect(got.errorCode).toBe("ECONNRESET");
    expect(got.data.length).toBeLessThanOrEqual(offset);
    expect(got.data.equals(full.subarray(0, got.data.length))).toBe(true);
    expect(proxy.bytesToClient).toBe(offset);
  });

  it("stalls a connection at `offset` for the given time, then forwards the rest exactly", async () => {
    proxy = await startFaultProxy(origin);
    const offset = 500_000;
    proxy.stallAt(offset, 400);
    const full = await direct("/blob");
    const got = await exchange(proxy.port, get("/blob"), [offset - 1, offset]);
    expect(got.errorCode).toBeUndefined();
    expect(got.data.equals(full)).toBe(true);
    const before = got.reached.get(offset - 1) ?? Number.NaN;
    const after = got.reached.get(offset) ?? Number.NaN;
    expect(after - before).toBeGreaterThanOrEqual(350);
    expect(proxy.firedFaults).toMatchObject([{ kind: "stall", offset }]);
  });

  it("stalls forever until close(), which destroys the stalled sockets", async () => {
    proxy = await startFaultProxy(origin);
    proxy.stallAt(1000, Number.POSITIVE_INFINITY);
    const pending = exchange(proxy.port, get("/blob"));
    while (proxy.firedFaults.length === 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300));
    expect(proxy.bytesToClient).toBe(1000);
    expect(proxy.openConnections).toBe(1);
    const started = performance.now();
    await proxy.close();
    const got = await pending;
    expect(performance.now() - started).toBeLessThan(1000);
    expect(got.data.length).toBe(1000);
    expect(proxy.openConnections).toBe(0);
  });

  it("counts offsets over all connections from the moment a fault is armed", async () => {
    proxy = await startFaultProxy(origin);
    const first = await exchange(proxy.port, get("/blob"));
    expect(first.data.length).toBeGreaterThan(BLOB.length);
    proxy.cutAt(first.data.length + 1234);
    const second = await exchange(proxy.port, get("/blob"));
    const third = await exchange(proxy.port, get("/blob"));
    expect(second.data.equals(first.data)).toBe(true);
    expect(third.data.equals(first.data.subarray(0, 1234))).toBe(true);
    expect(third.ended).toBe(true);
    expect(proxy.firedFaults).toMatchObject([{ kind: "cut", connection: 2 }]);
  });

  it("fires several faults in offset order, each once", async () => {
    proxy = await startFaultProxy(origin);
    proxy.cutAt(300_000);
    proxy.resetAt(100_000);
    const a = await exchange(proxy.port, get("/blob"));
    const b = await exchange(proxy.port, get("/blob"));
    const c = await exchange(proxy.port, get("/blob"));
    expect(a.errorCode).toBe("ECONNRESET");
    expect(b.ended).toBe(true);
    expect(b.data.length).toBe(200_000);
    expect(c.data.length).toBe((await direct("/blob")).length);
    expect(proxy.firedFaults.map((f) => f.kind)).toEqual(["reset", "cut"]);
  });

  it("throttles forwarding", async () => {
    proxy = await startFaultProxy(origin);
    proxy.throttle(4 * 1024 * 1024);
    let started = performance.now();
    const slow = await exchange(proxy.port, get("/blob"));
    const slowMs = performance.now() - started;
    expect(slow.data.equals(await direct("/blob"))).toBe(true);
    // 2 MiB at 4 MiB/s: half a second, give or take the initial burst.
    expect(slowMs).toBeGreaterThan(400);
    expect(slowMs).toBeLessThan(3000);
    proxy.throttle(undefined);
    started = performance.now();
    await exchange(proxy.port, get("/blob"));
    expect(performance.now() - started).toBeLessThan(300);
  });

  it("rewrites matching responses and fixes their framing, on a keep-alive connection", async () => {
    proxy = await startFaultProxy(origin);
    proxy.rewriteResponses({
      match: (req) => isListObjectsV2(req),
      rewrite: (body) => `rewritten ${body.length}`,
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const payload = CHUNKS.reduce((n, chunk) => n + chunk.length, 0);
      const listed = await httpCall(agent, "GET", "/list?list-type=2");
      const plain = await httpCall(agent, "GET", "/chunked");
      const blob = await httpCall(agent, "GET", "/blob");
      expect(listed.body.toString()).toBe(`rewritten ${payload}`);
      expect(plain.body.equals(Buffer.concat(CHUNKS))).toBe(true);
      expect(blob.body.equals(BLOB)).toBe(true);
      expect(proxy.requests.map((r) => [r.connection, r.rewritten])).toEqual([
        [0, true],
        [0, false],
        [0, false],
      ]);
    } finally {
      agent.destroy();
    }
  });

  it("keeps SigV4 requests valid in front of the S3 server and can inject listing entries", async () => {
    const bucket = await createBucket("proxy");
    const data = randomBytes(300_000);
    const { etag } = await putObject(bucket, "dir/a.bin", data);
    proxy = await startFaultProxy(s3Info().endpoint);
    const info = s3Info();
    const client = new S3Client({
      endpoint: proxy.endpoint,
      region: info.region,
      forcePathStyle: true,
      credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey },
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    try {
      const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/a.bin" }));
      const bytes = Buffer.from((await got.Body?.transformToByteArray()) ?? []);
      const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
      expect(sha(bytes)).toBe(sha(data));

      proxy.rewriteResponses({
        match: (req, status) => status === 200 && isListObjectsV2(req),
        rewrite: (body) =>
          injectListEntries(body.toString("utf8"), [
            { key: "dir/../<evil> & \u0001", size: 1, etag: "0".repeat(32) },
          ]),
      });
      const listed = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: "dir/" }),
      );
      expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([
        ["dir/a.bin", data.length],
        ["dir/../<evil> & \u0001", 1],
      ]);
      expect(listed.KeyCount).toBe(2);
      expect(proxy.requests.map((r) => [r.method, r.status, isListObjectsV2(r)])).toEqual([
        ["GET", 200, false],
        ["GET", 200, true],
      ]);
      expect(proxy.requests[0]?.bodyBytes).toBe(data.length);
      expect(etag).toMatch(/^[0-9a-f]{32}$/);
    } finally {
      client.destroy();
    }
  });
});
