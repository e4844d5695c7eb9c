// Stores reached through an HTTP proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as in clusters
// whose egress goes through one: dsfetch ignored the variables and could not reach the store.
// The test's proxy (below) serves CONNECT tunnels and absolute-form requests, and counts
// them; the https:// store is a TLS front with a private CA before MinIO. Stores are named
// `store.test` (which only the test's proxy resolves, to 127.0.0.1): localhost and loopback
// addresses are never proxied, as in Go.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Http1Pool } from "../../src/fetch/http1.ts";
import { bypassed, proxyFor } from "../../src/fetch/proxy.ts";
import { type CliResult, runCli } from "../harness/cli.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";
import { selfSigned } from "../harness/tls-cert.ts";
import { startTlsFront, type TlsFront } from "../harness/tls-front.ts";

let dir: string;
let bucket: string;
let tlsFront: TlsFront | undefined;
let proxy: Server;
let httpsEndpoint: string;
let httpEndpoint: string;
let proxyUrl: string;
let caFile: string;
let sts: HttpsServer;
let stsEndpoint: string;
/** The web identity tokens the test's STS was sent. */
const stsTokens: string[] = [];
const seen = { tunnels: [] as string[], forwarded: 0, authorizations: [] as string[] };
/** When set, the proxy answers 407 unless this Proxy-Authorization comes. */
let requiredAuth: string | undefined;
const one = randomBytes(3 * 1024 * 1024 + 5);
const small = randomBytes(7000);
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Reads a request head (up to the blank line) from a fresh client connection. */
function readHead(socket: Socket): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      socket.pause();
      resolve({ head: buffered.toString("latin1", 0, end), rest: buffered.subarray(end + 4) });
    };
    socket.on("data", onData);
    socket.on("error", reject);
  });
}

/** The test's own name resolution: `store.test` and its subdomains are this machine. */
function resolveTest(host: string): string {
  return host === "store.test" || host.endsWith(".store.test") ? "127.0.0.1" : host;
}

function startProxy(): Promise<Server> {
  const server = createServer(async (client) => {
    client.on("error", () => {});
    const { head, rest } = await readHead(client).catch(() => ({
      head: "",
      rest: Buffer.alloc(0),
    }));
    const [requestLine = "", ...headerLines] = head.split("\r\n");
    const auth = headerLines
      .find((line) => /^proxy-authorization:/i.test(line))
      ?.replace(/^proxy-authorization:\s*/i, "");
    seen.authorizations.push(auth ?? "");
    if (requiredAuth !== undefined && auth !== requiredAuth) {
      client.end(
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
      );
      return;
    }
    const connectTo = /^CONNECT (\S+):(\d+) HTTP\/1\.1$/.exec(requestLine);
    if (connectTo !== null) {
      seen.tunnels.push(`${connectTo[1]}:${connectTo[2]}`);
      const upstream = connect(Number(connectTo[2]), resolveTest(connectTo[1] ?? ""), () => {
        client.write("HTTP/1.1 200 Connection established\r\n\r\n");
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream).pipe(client);
        client.resume();
      });
      upstream.on("error", () => client.destroy());
      return;
    }
    // Absolute form: GET http://host:port/path HTTP/1.1. GET and HEAD only (no bodies), so
    // every later request line on the connection is rewritten the same way in the stream.
    const absolute = /^(GET|HEAD) http:\/\/([^/\s]+)(\/\S*) HTTP\/1\.1$/.exec(requestLine);
    if (absolute === null) {
      client.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    const target = new URL(`http://${absolute[2]}`);
    const upstream = connect(Number(target.port || 80), resolveTest(target.hostname));
    upstream.on("error", () => client.destroy());
    const originForm = (text: string) =>
      text
        .replace(/^(GET|HEAD) http:\/\/[^/\s]+(\/\S*) HTTP\/1\.1$/gm, (_, method, path) => {
          seen.forwarded += 1;
          return `${method} ${path} HTTP/1.1`;
        })
        .replace(/^proxy-authorization:[^\r\n]*\r\n/gim, "");
    upstream.write(originForm(`${head}\r\n\r\n${rest.toString("latin1")}`), "latin1");
    client.on("data", (chunk: Buffer) =>
      upstream.write(originForm(chunk.toString("latin1")), "latin1"),
    );
    client.resume();
    upstream.pipe(client);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dsfetch-proxy-"));
  bucket = await createBucket("proxied");
  await putObject(bucket, "one/model.bin", one);
  await putObject(bucket, "set/a.bin", small);
  await putObject(bucket, "set/b.bin", one);
  const { key, cert } = selfSigned(dir, "store", "DNS:store.test,DNS:*.store.test,IP:127.0.0.1");
  caFile = join(dir, "ca.pem");
  writeFileSync(caFile, cert);
  tlsFront = await startTlsFront({ key, cert }, s3Info().endpoint);
  httpsEndpoint = `https://store.test:${tlsFront.port}`;
  httpEndpoint = `http://store.test:${new URL(s3Info().endpoint).port}`;
  proxy = await startProxy();
  const address = proxy.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  proxyUrl = `http://127.0.0.1:${address.port}`;
  sts = await startSts(key, cert);
  const stsAddress = sts.address();
  if (stsAddress === null || typeof stsAddress === "string") throw new Error("no port");
  // A name only the test's proxy resolves: reachable through HTTPS_PROXY and no other way.
  stsEndpoint = `https://sts.store.test:${stsAddress.port}`;
}, 60_000);

/**
 * STS as EKS pods (IRSA) reach it: AssumeRoleWithWebIdentity answered with the test store's
 * keys (no session token: MinIO takes its keys as they are).
 */
function startSts(key: string, cert: string): Promise<HttpsServer> {
  const server = createHttpsServer({ key, cert }, (request, response) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (chunk: string) => {
      body += chunk;
    });
    request.on("end", () => {
      const form = new URLSearchParams(body);
      if (form.get("Action") !== "AssumeRoleWithWebIdentity") {
        response.writeHead(400).end();
        return;
      }
      const token = form.get("WebIdentityToken") ?? "";
      stsTokens.push(token);
      if (token === "revoked-token") {
        response.writeHead(403, { "content-type": "text/xml" });
        response.end(
          "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error><RequestId>1</RequestId></ErrorResponse>",
        );
        return;
      }
      const info = s3Info();
      response.writeHead(200, { "content-type": "text/xml" });
      response.end(
        `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>${info.accessKeyId}</AccessKeyId><SecretAccessKey>${info.secretAccessKey}</SecretAccessKey><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`,
      );
    });
  });
  // Idle connections kept open for long: a client that keeps one (it cannot be unref'd
  // through a tunnel) would not exit before the test's timeout.
  server.keepAliveTimeout = 120_000;
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

afterAll(async () => {
  await new Promise<void>((resolve) => proxy?.close(() => resolve()));
  await new Promise<void>((resolve) => sts?.close(() => resolve()));
  await tlsFront?.close();
  rmSync(dir, { recursive: true, force: true });
});

function reset(): void {
  seen.tunnels = [];
  seen.forwarded = 0;
  seen.authorizations = [];
}

async function fetchVia(
  endpoint: string,
  env: Record<string, string>,
): Promise<CliResult & { data: string }> {
  const storage = mkdtempSync(join(dir, "storage-"));
  const run = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "t", "--json"],
    {
      env: {
        ...testEnv(),
        AWS_ENDPOINT_URL: endpoint,
        AWS_CA_BUNDLE: caFile,
        HTTPS_PROXY: "",
        HTTP_PROXY: "",
        NO_PROXY: "",
        ...env,
      },
      stdin: JSON.stringify([
        { uri: `s3://${bucket}/one/model.bin`, name: "one", pathStyle: true },
        { uri: `s3://${bucket}/set/`, name: "set", pathStyle: true },
      ]),
      timeoutMs: 90_000,
    },
  );
  return { ...run, data: join(storage, "t", "data") };
}

async function expectStaged(run: CliResult & { data: string }): Promise<void> {
  // stdout too: with --json, a dataset's error is there only (a CI failure said only "7").
  expect(run.code, `${run.stderr}\n${run.stdout}`).toBe(0);
  expect(sha(await readFile(join(run.data, "one", "model.bin")))).toBe(sha(one));
  expect(sha(await readFile(join(run.data, "set", "a.bin")))).toBe(sha(small));
  expect(sha(await readFile(join(run.data, "set", "b.bin")))).toBe(sha(one));
}

describe("through an HTTP proxy", () => {
  it("an https:// store through HTTPS_PROXY: CONNECT tunnels to it, TLS end to end, staged", async () => {
    reset();
    const run = await fetchVia(httpsEndpoint, { HTTPS_PROXY: proxyUrl });
    await expectStaged(run);
    const port = new URL(httpsEndpoint).port;
    expect(seen.tunnels.length).toBeGreaterThan(0);
    expect(new Set(seen.tunnels)).toEqual(new Set([`store.test:${port}`]));
    expect(seen.forwarded).toBe(0);
  });

  it("an http:// store through HTTP_PROXY (lower-case name too): requests in absolute form, staged", async () => {
    reset();
    const run = await fetchVia(httpEndpoint, { http_proxy: proxyUrl });
    await expectStaged(run);
    expect(seen.forwarded).toBeGreaterThan(2);
    expect(seen.tunnels).toEqual([]);
  });

  it("NO_PROXY naming the store's domain: straight to it (here a name nothing else resolves), the proxy sees nothing", async () => {
    reset();
    const run = await fetchVia(httpsEndpoint, {
      HTTPS_PROXY: proxyUrl,
      NO_PROXY: "localhost,.test",
    });
    expect(run.code, run.stderr).toBe(6);
    expect(JSON.parse(run.stdout).datasets[0].error.message).toMatch(
      /does not resolve \(ENOTFOUND\)/,
    );
    expect(seen.tunnels).toEqual([]);
    expect(seen.authorizations).toEqual([]);
  });

  it("a loopback store is never proxied (as in Go), whatever the variables say", async () => {
    reset();
    const front = new URL(httpsEndpoint).port;
    await expectStaged(await fetchVia(`https://127.0.0.1:${front}`, { HTTPS_PROXY: proxyUrl }));
    await expectStaged(await fetchVia(s3Info().endpoint, { HTTP_PROXY: proxyUrl }));
    expect(seen.tunnels).toEqual([]);
    expect(seen.forwarded).toBe(0);
  });

  it("a virtual-host bucket: the tunnel goes to the bucket's own host name, the one TLS presents", async () => {
    reset();
    const pool = new Http1Pool({
      url: new URL(httpsEndpoint),
      maxSockets: 2,
      idleTimeoutMs: 10_000,
      tls: { ca: [readFileSync(caFile, "utf8")] },
      proxyFor: (host, port) => proxyFor(host, port, true, { HTTPS_PROXY: proxyUrl }),
    });
    try {
      const port = new URL(httpsEndpoint).port;
      const response = await pool.request({
        method: "HEAD",
        path: "/one/model.bin",
        headers: { host: `${bucket}.store.test:${port}` },
      });
      await response.readBody(() => {});
      expect(seen.tunnels).toEqual([`${bucket}.store.test:${port}`]);
    } finally {
      pool.destroy();
    }
  });

  it("credentials in the proxy URL go in Proxy-Authorization, and never into a message", async () => {
    reset();
    const secret = "s3cr3t-pr0xy-pass";
    requiredAuth = `Basic ${Buffer.from(`user:${secret}`).toString("base64")}`;
    try {
      const withAuth = `http://user:${secret}@${new URL(proxyUrl).host}`;
      await expectStaged(await fetchVia(httpsEndpoint, { HTTPS_PROXY: withAuth }));
      await expectStaged(await fetchVia(httpEndpoint, { HTTP_PROXY: withAuth }));
      reset();
      const wrong = await fetchVia(httpsEndpoint, {
        HTTPS_PROXY: `http://user:wrong-${secret}@${new URL(proxyUrl).host}`,
      });
      expect(wrong.code, wrong.stderr).toBe(6);
      const { error } = JSON.parse(wrong.stdout).datasets[0];
      expect(error.message).toMatch(
        /the proxy http:\/\/127\.0\.0\.1:\d+ refused the tunnel to store\.test:\d+: HTTP\/1\.1 407 Proxy Authentication Required/,
      );
      expect(error.hint).toMatch(/the proxy refused the credentials/);
      expect(`${wrong.stdout}${wrong.stderr}`).not.toContain(secret);
    } finally {
      requiredAuth = undefined;
    }
  });

  it("web identity (EKS IRSA): the credential chain's STS request goes through HTTPS_PROXY too, trusting AWS_CA_BUNDLE", async () => {
    reset();
    stsTokens.length = 0;
    const token = join(dir, "web-identity-token");
    writeFileSync(token, "eyJ-test-web-identity-token");
    const irsa = {
      AWS_ACCESS_KEY_ID: "",
      AWS_SECRET_ACCESS_KEY: "",
      AWS_WEB_IDENTITY_TOKEN_FILE: token,
      AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/dsfetch-test",
      AWS_ENDPOINT_URL_STS: stsEndpoint,
    };
    // The store is on loopback (never proxied); STS only through the proxy.
    const started = performance.now();
    const run = await fetchVia(s3Info().endpoint, { ...irsa, HTTPS_PROXY: proxyUrl });
    await expectStaged(run);
    // Ended when done, not when STS closed the connection (it keeps it 120 s).
    expect(performance.now() - started).toBeLessThan(60_000);
    expect(stsTokens).toEqual(["eyJ-test-web-identity-token"]);
    expect(seen.tunnels).toEqual([`sts.store.test:${new URL(stsEndpoint).port}`]);

    // Without the proxy, STS cannot be reached: said as such (TRANSIENT, exit 6), not an
    // anonymous try.
    reset();
    stsTokens.length = 0;
    const direct = await fetchVia(s3Info().endpoint, irsa);
    expect(direct.code, direct.stderr).toBe(6);
    const { error } = JSON.parse(direct.stdout).datasets[0];
    expect(error.code).toBe("TRANSIENT");
    expect(error.message).toMatch(
      /^one: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are set, but no credentials could be loaded with them \(.*sts\.store\.test.*\)$/,
    );
    expect(error.hint).toContain("HTTPS_PROXY");
    expect(stsTokens).toEqual([]);
    expect(seen.tunnels).toEqual([]);

    // STS refusing the token: ACCESS_DENIED (exit 4), its answer named.
    writeFileSync(token, "revoked-token");
    const refused = await fetchVia(s3Info().endpoint, { ...irsa, HTTPS_PROXY: proxyUrl });
    expect(refused.code, refused.stderr).toBe(4);
    const denied = JSON.parse(refused.stdout).datasets[0].error;
    expect(denied.code).toBe("ACCESS_DENIED");
    expect(denied.message).toContain("Not authorized to perform sts:AssumeRoleWithWebIdentity");
  });

  it("NO_PROXY entries: hosts, domains and their subdomains, ports, IP ranges, *", () => {
    expect(bypassed("s3.amazonaws.com", 443, "amazonaws.com")).toBe(true);
    expect(bypassed("bucket.s3.amazonaws.com", 443, ".amazonaws.com")).toBe(true);
    expect(bypassed("notamazonaws.com", 443, "amazonaws.com")).toBe(false);
    expect(bypassed("minio.local", 9000, "minio.local:9000")).toBe(true);
    expect(bypassed("minio.local", 9001, "minio.local:9000")).toBe(false);
    expect(bypassed("10.1.2.3", 80, "10.0.0.0/8")).toBe(true);
    expect(bypassed("11.1.2.3", 80, "10.0.0.0/8")).toBe(false);
    expect(bypassed("::1", 80, "[::1]")).toBe(true);
    // Addresses as addresses: an endpoint's URL writes IPv6 compressed, a NO_PROXY list may not.
    expect(bypassed("fd00::1", 443, "fd00:0:0:0:0:0:0:1")).toBe(true);
    expect(bypassed("fd00::1", 443, "[fd00:0::1]:443")).toBe(true);
    expect(bypassed("fd00::1", 443, "[fd00:0::1]:9000")).toBe(false);
    expect(bypassed("fd00::2", 443, "fd00::1")).toBe(false);
    expect(bypassed("10.0.0.1", 443, "10.0.0.1")).toBe(true);
    expect(bypassed("10.0.0.10", 443, "10.0.0.1")).toBe(false);
    expect(bypassed("a.10.0.0.1", 443, "10.0.0.1")).toBe(false);
    // Loopback, however written, never goes through the proxy (as in Go).
    for (const host of ["127.0.0.1", "127.9.9.9", "[::1]", "[::ffff:127.0.0.1]", "localhost"]) {
      expect(proxyFor(host, 9000, true, { HTTPS_PROXY: "http://proxy:3128" }), host).toBe(
        undefined,
      );
    }
    expect(
      proxyFor("[::ffff:10.0.0.1]", 9000, true, { HTTPS_PROXY: "http://proxy:3128" }),
    ).not.toBe(undefined);
    expect(bypassed("anything", 1, "foo, *")).toBe(true);
    expect(bypassed("anything", 1, "")).toBe(false);
  });
});
