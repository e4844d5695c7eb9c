// dsfetch connects to stores directly, not through an HTTP proxy. Where a network allows S3
// only through one (HTTPS_PROXY set, as the AWS CLI, s5cmd and rclone honour it), a store that
// cannot be reached says so instead of only "unreachable or overloaded; try again later".
import { afterEach, describe, expect, it, vi } from "vitest";
import { classifyS3Error, type S3ErrorContext } from "../../src/fetch/s3-errors.ts";

const ctx: S3ErrorContext = {
  dataset: "d",
  uri: "s3://b/k",
  bucket: "b",
  endpoint: "AWS S3 (us-east-1)",
  anonymous: false,
  action: "reading",
};
const refused = Object.assign(new Error("connect ECONNREFUSED 52.216.0.1:443"), {
  code: "ECONNREFUSED",
});
const unresolved = Object.assign(new Error("getaddrinfo ENOTFOUND s3.amazonaws.com"), {
  code: "ENOTFOUND",
});
const slowDown = { name: "SlowDown", Code: "SlowDown", $metadata: { httpStatusCode: 503 } };
const PROXIES = [
  "HTTPS_PROXY",
  "https_proxy",
  "HTTP_PROXY",
  "http_proxy",
  "ALL_PROXY",
  "all_proxy",
];

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("a store that cannot be reached, with an HTTP proxy set", () => {
  it("says the proxy is not used, for a refused connection and a name that does not resolve", () => {
    for (const name of PROXIES) vi.stubEnv(name, "");
    vi.stubEnv("HTTPS_PROXY", "http://proxy.corp:3128");
    for (const error of [refused, unresolved]) {
      expect(classifyS3Error(error, ctx).hint).toMatch(
        /\(HTTPS_PROXY is set, but dsfetch connects to stores directly, not through an HTTP proxy/,
      );
    }
    // An answer from the store is not about reaching it.
    expect(classifyS3Error(slowDown, ctx).hint).not.toMatch(/PROXY/);
  });

  it("without one: no such note", () => {
    for (const name of PROXIES) vi.stubEnv(name, "");
    for (const error of [refused, unresolved]) {
      expect(classifyS3Error(error, ctx).hint).not.toMatch(/PROXY/);
    }
  });
});
