// Endpoints that are not S3 (exploratory review, 2026-12-07): one that answers 404 to every
// request (a wrong URL, a gateway without its backend): an object pinned by its etag is "not
// found" as the object, not as the folder dsfetch looks for next (it read "s3://b/arch.tar.gz/
// does not exist"); one that answers with a web page (a captive portal): said so (it read
// "not S3-compatible enough").

import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";

let server: Server;
let endpoint: string;
let webPage: Server;
let webEndpoint: string;
let root: string;
const asked: string[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-404-"));
  server = createServer((request, response) => {
    asked.push(`${request.method} ${request.url}`);
    response.writeHead(404, { "content-type": "text/plain" });
    response.end(request.method === "HEAD" ? undefined : "404 page not found\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  webPage = createServer((_request, response) => {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end("<html><body>Welcome! Sign in to continue.</body></html>\n");
  });
  await new Promise<void>((resolve) => webPage.listen(0, "127.0.0.1", resolve));
  webEndpoint = `http://127.0.0.1:${(webPage.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await new Promise((resolve) => webPage.close(resolve));
  await rm(root, { recursive: true, force: true });
});

/** `dsfetch fetch --json` of `datasets` from the store at `store`. */
function fetchFrom(store: string, datasets: unknown) {
  return runCli(["fetch", "--datasets", "-", "--storage-root", root, "--team", "t", "--json"], {
    env: {
      AWS_ENDPOINT_URL: store,
      AWS_ACCESS_KEY_ID: "key",
      AWS_SECRET_ACCESS_KEY: "secret",
      AWS_REGION: "us-east-1",
    },
    stdin: JSON.stringify(datasets),
  });
}

describe("an endpoint that answers 404 to everything", () => {
  it("an object pinned by its etag: NOT_FOUND (exit 3) naming the object, not a folder", async () => {
    const result = await fetchFrom(endpoint, [
      { uri: "s3://bucket/arch.tar.gz", etag: "0".repeat(32) },
    ]);
    expect(result.code, result.stderr).toBe(3);
    const error = JSON.parse(result.stdout).datasets[0].error;
    expect(error.code).toBe("NOT_FOUND");
    expect(error.message).toContain("s3://bucket/arch.tar.gz does not exist");
    expect(error.message).not.toContain("arch.tar.gz/");
    // It did look for a folder of that name (the listing got the 404 too).
    expect(asked.some((line) => line.startsWith("GET ") && line.includes("list-type=2"))).toBe(
      true,
    );
  });

  it("a web page at the endpoint (text/html, no ETag): S3_ERROR saying the endpoint answered a web page", async () => {
    const result = await fetchFrom(webEndpoint, [{ uri: "s3://bucket/model.bin" }]);
    expect(result.code, result.stderr).toBe(6);
    const error = JSON.parse(result.stdout).datasets[0].error;
    expect(error.code).toBe("S3_ERROR");
    expect(error.hint).toContain(
      "answered with a web page (text/html), not as S3 does: check the endpoint URL",
    );
  });
});
