// Stores that answer otherwise than AWS and MinIO (interop review, 2026-12-06), through the
// test's fault proxy in front of MinIO:
// - a pinned versionId answered without x-amz-version-id (a store without versioning, or a
//   proxy dropping the query, sends the latest version so): NO_SUCH_VERSION, nothing
//   published (it was published as the pinned version, verified, exit 0);
// - a body the store transformed on the way (Google Cloud Storage's decompressive
//   transcoding says so in x-guploader-response-body-transformations): S3_ERROR at once, not
//   retried, and a folder is not restarted three times as "changed";
// - requests to Google Cloud Storage accept gzip (its stored bytes, not transcoded ones), and
//   requests to other stores do not.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutBucketVersioningCommand } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ObjectGetter } from "../../src/fetch/object-get.ts";
import { type CliResult, runCli } from "../harness/cli.ts";
import {
  type FaultProxy,
  type ProxiedRequest,
  type ResponseRewrite,
  startFaultProxy,
} from "../harness/fault-proxy.ts";
import { adminClient, createBucket, putMany, putObject, s3Info, testEnv } from "../harness/s3.ts";

const TEAM = "ml";
let bucket: string;
let scratch: string;
let proxy: FaultProxy | undefined;
let v1: { etag: string; versionId?: string };
const first = randomBytes(70_000);
const second = randomBytes(50_000);

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-interop-pins-"));
  bucket = await createBucket("interop", { versioned: true });
  v1 = await putObject(bucket, "v.bin", first);
  await putObject(bucket, "v.bin", second);
  await putMany(bucket, "folder/f", 4, (i) => randomBytes(2000 + i));
}, 120_000);

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function proxyWith(rule: ResponseRewrite): Promise<FaultProxy> {
  const p = await startFaultProxy(s3Info().endpoint);
  proxy = p;
  p.rewriteResponses(rule);
  return p;
}

async function fetchVia(
  p: FaultProxy,
  datasets: unknown,
): Promise<CliResult & { storage: string; published: string[] }> {
  const storage = await mkdtemp(join(scratch, "storage-"));
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", TEAM, "--json"],
    {
      env: { ...testEnv(), AWS_ENDPOINT_URL: p.endpoint },
      stdin: JSON.stringify(datasets),
      timeoutMs: 120_000,
    },
  );
  const published = (await readdir(join(storage, TEAM, "data")).catch(() => [])).filter(
    (entry) => entry !== ".dsfetch",
  );
  return { ...result, storage, published };
}

const diagnostics = (result: CliResult) =>
  `exit ${result.code}\n${result.stderr}\n${result.stdout}`;

describe("a store that does not confirm a pinned version", () => {
  it("a HEAD without x-amz-version-id for a pinned versionId is NO_SUCH_VERSION (exit 3), nothing published", async () => {
    const versionId = v1.versionId;
    expect(versionId, "MinIO gave the bucket versions").toBeDefined();
    const heads: ProxiedRequest[] = [];
    const p = await proxyWith({
      match: (request) => {
        if (request.method !== "HEAD") return false;
        heads.push(request);
        return true;
      },
      rewrite: (body) => body,
      headers: (fields) => fields.filter(([name]) => name.toLowerCase() !== "x-amz-version-id"),
    });
    const result = await fetchVia(p, [{ uri: `s3://${bucket}/v.bin`, versionId }]);
    expect(result.code, diagnostics(result)).toBe(3);
    expect(result.stdout).toContain("NO_SUCH_VERSION");
    expect(result.stdout).toContain("did not say which version it answered");
    expect(result.published).toEqual([]);
    expect(heads.length).toBeGreaterThan(0);
  });

  it("a version the store names other than the pin is refused, nothing published", async () => {
    const p = await proxyWith({
      match: (request) => request.method === "HEAD",
      rewrite: (body) => body,
      headers: (fields) =>
        fields.map(([name, value]) =>
          name.toLowerCase() === "x-amz-version-id" ? [name, "someone-elses"] : [name, value],
        ),
    });
    const result = await fetchVia(p, [{ uri: `s3://${bucket}/v.bin`, versionId: v1.versionId }]);
    // Refused by the answer's pin check (object-get.ts) before the HEAD is looked at, as the
    // store ignoring versionId it is (it was OBJECT_CHANGED, "overwritten; run again").
    expect(result.code, diagnostics(result)).toBe(3);
    expect(result.stdout).toContain("NO_SUCH_VERSION");
    expect(result.stdout).toContain("the answer has version someone-elses");
    expect(result.stdout).toContain("pin the object by");
    expect(result.published).toEqual([]);
  });

  it('a pinned "null" version (written before versioning was enabled) with a newer version beside it is fetched, byte-exact', async () => {
    // Review of the interop fixes (2026-12-06): "null" was mapped to no version, the GETs
    // asked for the latest one, and If-Match with the null version's ETag failed 412 at
    // every run.
    const nulls = await createBucket("nullversion");
    const old = randomBytes(40_000);
    await putObject(nulls, "a.bin", old);
    await adminClient().send(
      new PutBucketVersioningCommand({
        Bucket: nulls,
        VersioningConfiguration: { Status: "Enabled" },
      }),
    );
    await putObject(nulls, "a.bin", randomBytes(40_000));
    const p = await proxyWith({ match: () => false, rewrite: (body) => body });
    const result = await fetchVia(p, [{ uri: `s3://${nulls}/a.bin`, versionId: "null" }]);
    expect(result.code, diagnostics(result)).toBe(0);
    const got = await readFile(join(result.storage, TEAM, "data", "a.bin", "a.bin"));
    const md5 = (data: Buffer) => createHash("md5").update(data).digest("hex");
    expect(md5(got)).toBe(md5(old));
  });

  it("a versionId pasted in upper case (MinIO's are lower-case UUIDs): the error says versions are case-sensitive", async () => {
    const versionId = v1.versionId ?? "";
    expect(versionId).toMatch(/[a-f]/);
    const storage = await mkdtemp(join(scratch, "storage-"));
    const result = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", TEAM, "--json"],
      {
        env: testEnv(),
        stdin: JSON.stringify([
          { uri: `s3://${bucket}/v.bin`, versionId: versionId.toUpperCase() },
        ]),
        timeoutMs: 120_000,
      },
    );
    expect(result.code, diagnostics(result)).toBe(3);
    const error = JSON.parse(result.stdout).datasets[0].error;
    expect(error.code).toBe("NO_SUCH_VERSION");
    expect(error.hint).toContain("version IDs are case-sensitive");
    expect(error.hint).toContain(`"${versionId.toLowerCase()}"?`);
  });

  it("an honest store still gives the pinned version (regression guard)", async () => {
    const p = await proxyWith({ match: () => false, rewrite: (body) => body });
    const result = await fetchVia(p, [{ uri: `s3://${bucket}/v.bin`, versionId: v1.versionId }]);
    expect(result.code, diagnostics(result)).toBe(0);
    expect(result.published).toEqual(["v.bin"]);
  });
});

describe("a body the store transformed on the way (GCS decompressive transcoding)", () => {
  const transcoded: Omit<ResponseRewrite, "match"> = {
    rewrite: (body) => body,
    headers: (fields) => [...fields, ["x-guploader-response-body-transformations", "gunzipped"]],
  };

  it("a single object: S3_ERROR naming the transformation, one GET, nothing published", async () => {
    const p = await proxyWith({ ...transcoded, match: (request) => request.method === "GET" });
    const result = await fetchVia(p, [{ uri: `s3://${bucket}/v.bin` }]);
    expect(result.code, diagnostics(result)).toBe(6);
    expect(result.stdout).toContain("transformed the object's bytes on the way");
    expect(result.stdout).toContain("gunzipped");
    expect(result.stdout).toContain("decompressed on the way");
    expect(p.requests.filter((request) => request.method === "GET")).toHaveLength(1);
    expect(result.published).toEqual([]);
  });

  it("a folder: S3_ERROR at once, not restarted as a changed folder", async () => {
    const p = await proxyWith({
      ...transcoded,
      match: (request) => request.method === "GET" && !request.target.includes("list-type"),
    });
    const result = await fetchVia(p, [{ uri: `s3://${bucket}/folder/` }]);
    expect(result.code, diagnostics(result)).toBe(6);
    expect(result.stdout).toContain("transformed the object's bytes on the way");
    expect(result.stderr).not.toContain("starting again");
    expect(result.published).toEqual([]);
  });
});

describe("an answer that names no ETag, from a store that may ignore If-Match", () => {
  /** A stand-in store answering every GET with these headers and 4 bytes. */
  async function answerWith(headers: Record<string, string>) {
    const server = createServer((_request, response) => {
      response.writeHead(206, {
        "content-length": "4",
        "content-range": "bytes 0-3/8",
        ...headers,
      });
      response.end("abcd");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const getter = new ObjectGetter({
      endpoint: { url: `http://127.0.0.1:${port}`, region: "us-east-1", forcePathStyle: true },
      credentials: async () => undefined,
    });
    const get = async () => {
      const response = await getter.get({
        bucket: "b",
        key: "k",
        range: { start: 0, end: 3 },
        ifMatch: "0123456789abcdef0123456789abcdef",
        lastModified: "2026-12-06T10:00:00.000Z",
      });
      await response.readBody(() => {});
    };
    return {
      get,
      close: async () => {
        getter.destroy();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  it("is pinned by its Last-Modified: another one is the 412 it should have been (two versions were mixed unseen)", async () => {
    const other = await answerWith({ "last-modified": "Sun, 06 Dec 2026 10:05:00 GMT" });
    try {
      await expect(other.get()).rejects.toMatchObject({
        $metadata: { httpStatusCode: 412 },
        message: expect.stringContaining("names no ETag and was last modified"),
      });
    } finally {
      await other.close();
    }
    const same = await answerWith({ "last-modified": "Sun, 06 Dec 2026 10:00:00 GMT" });
    try {
      await same.get();
    } finally {
      await same.close();
    }
  });
});

describe("Accept-Encoding", () => {
  /** The headers of one GET the getter sends to `endpoint`, caught by a stand-in proxy. */
  async function headersSentTo(endpoint: string): Promise<IncomingHttpHeaders> {
    let seen: IncomingHttpHeaders | undefined;
    const server = createServer((request, response) => {
      seen = request.headers;
      response.writeHead(200, { "content-length": "2", etag: '"x"' });
      response.end("ok");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const getter = new ObjectGetter({
      endpoint: { url: endpoint, region: "auto", forcePathStyle: true },
      credentials: async () => undefined,
      // HTTP_PROXY: the request for the store's host goes to the stand-in (absolute form).
      env: { HTTP_PROXY: `http://127.0.0.1:${port}` },
    });
    try {
      const response = await getter.get({ bucket: "b", key: "k" });
      await response.readBody(() => {});
    } finally {
      getter.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
    if (seen === undefined) throw new Error("no request arrived");
    return seen;
  }

  it("Google Cloud Storage is asked for its stored bytes (gzip accepted); other stores are not", async () => {
    expect((await headersSentTo("http://storage.googleapis.com"))["accept-encoding"]).toBe("gzip");
    expect((await headersSentTo("http://minio.example.com"))["accept-encoding"]).toBeUndefined();
  });
});

describe("a store's refusal of ChecksumMode is remembered only when it is one", () => {
  it("one 400 to a HEAD with ChecksumMode (a glitch) does not take checksums from the other datasets", async () => {
    const b = await createBucket("checksummemory");
    await putObject(b, "a.bin", randomBytes(40_000));
    await putObject(b, "b.bin", randomBytes(50_000));
    await putObject(b, "c.bin", randomBytes(60_000));
    let fired = false;
    const p = await proxyWith({
      match: (request) => {
        if (fired || request.method !== "HEAD" || !request.target.includes("a.bin")) return false;
        if (request.headers["x-amz-checksum-mode"] === undefined) return false;
        fired = true;
        return true;
      },
      startLine: () => "HTTP/1.1 400 Bad Request",
      rewrite: (body) => body,
    });
    const result = await fetchVia(p, [
      { uri: `s3://${b}/a.bin` },
      { uri: `s3://${b}/b.bin` },
      { uri: `s3://${b}/c.bin` },
    ]);
    expect(result.code, diagnostics(result)).toBe(0);
    expect(fired).toBe(true);
    // The other datasets' HEADs still asked for the stored checksums.
    for (const key of ["b.bin", "c.bin"]) {
      const heads = p.requests.filter((r) => r.method === "HEAD" && r.target.includes(key));
      expect(heads.length, key).toBeGreaterThan(0);
      expect(
        heads.some((r) => r.headers["x-amz-checksum-mode"] !== undefined),
        key,
      ).toBe(true);
    }
  });
});
