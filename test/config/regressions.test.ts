// Regressions for bugs found by review of the config parsers (one test each).
import { describe, expect, it, vi } from "vitest";
import { parseDatasetsText } from "../../src/config/datasets-array.ts";
import { Redactor } from "../../src/config/redact.ts";
import { parseSize } from "../../src/config/size.ts";
import type { DsfetchError } from "../../src/errors.ts";
import { thrown } from "../harness/thrown.ts";

function errorOf(text: string, env: Record<string, string> = {}): DsfetchError {
  return thrown(() => parseDatasetsText(text, "test.json", env));
}

/**
 * The characters String.prototype.indexOf reads while `fn` runs (from where each search
 * starts to what it finds, or to the end of the text): work counted, not time.
 */
function charactersSearched<T>(fn: () => T): { result: T; read: number } {
  const indexOf = String.prototype.indexOf;
  let read = 0;
  const spy = vi.spyOn(String.prototype, "indexOf").mockImplementation(function (
    this: string,
    search: string,
    position?: number,
  ) {
    const text = String(this);
    const from = Math.min(Math.max(position ?? 0, 0), text.length);
    const at = indexOf.call(text, search, from);
    read += (at === -1 ? text.length : at + search.length) - from;
    return at;
  });
  try {
    return { result: fn(), read };
  } finally {
    spy.mockRestore();
  }
}

describe("config regressions", () => {
  it("decimal sizes are exact, not off by one byte from floating point", () => {
    expect(parseSize("4.03K")).toEqual({ ok: true, bytes: 4030 });
    expect(parseSize("1.07G")).toEqual({ ok: true, bytes: 1_070_000_000 });
    expect(parseSize("0.27T")).toEqual({ ok: true, bytes: 270_000_000_000 });
    expect(parseSize("2.007K")).toEqual({ ok: true, bytes: 2007 });
  });

  it("an invalid endpoint URL with credentials is not echoed with its password", () => {
    const error = errorOf(
      JSON.stringify([{ uri: "s3://b/k", endpoint: "http://AK:SECRETPW@host:99999" }]),
    );
    expect(error.message).toContain('field "endpoint"');
    expect(error.message).not.toContain("SECRETPW");
    const fromEnv = errorOf(JSON.stringify([{ uri: "s3://b/k" }]), {
      AWS_ENDPOINT_URL: "http://AK:SECRETPW@host:99999",
    });
    expect(fromEnv.message).toContain("environment variable AWS_ENDPOINT_URL");
    expect(fromEnv.message).not.toContain("SECRETPW");
  });

  it("credentials written into an s3:// URI are refused without being echoed", () => {
    const error = errorOf(JSON.stringify([{ uri: "s3://AK:SECRETPW@bucket/key" }]));
    expect(error.message).toContain("contains credentials");
    expect(error.message).not.toContain("SECRETPW");
    const noScheme = errorOf(JSON.stringify([{ uri: "AK:SECRETPW@bucket/key" }]));
    expect(noScheme.message).not.toContain("SECRETPW");
  });

  it("a secret key holding '/' (half of AWS's do) is not echoed in part, wherever it was written", () => {
    // Review, 2026-12-06: the user info was taken to end at a "/", and the part of the secret
    // before its first "/" was echoed (a bucket name, an endpoint, the uri/url disagreement).
    const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const leaks = (error: DsfetchError) =>
      [error.message, error.hint ?? ""].some((text) => text.includes("wJalrXUtnFEMI"));
    const inUri = errorOf(JSON.stringify([{ uri: `s3://AKIAEXAMPLE:${secret}@bucket/key` }]));
    expect(inUri.message).toContain("contains credentials");
    expect(leaks(inUri)).toBe(false);
    expect(leaks(errorOf(JSON.stringify([{ uri: `AKIAEXAMPLE:${secret}@bucket/key` }])))).toBe(
      false,
    );
    const endpoint = `http://AKIAEXAMPLE:${secret}@minio.internal:9000`;
    const inEndpoint = errorOf(JSON.stringify([{ uri: "s3://b/k", endpoint }]));
    expect(inEndpoint.message).toContain('field "endpoint"');
    expect(leaks(inEndpoint)).toBe(false);
    const inEnv = errorOf(JSON.stringify([{ uri: "s3://b/k" }]), { AWS_ENDPOINT_URL: endpoint });
    expect(inEnv.message).toContain("environment variable AWS_ENDPOINT_URL");
    expect(leaks(inEnv)).toBe(false);
    const disagree = errorOf(
      JSON.stringify([{ uri: `s3://AKIAEXAMPLE:${secret}@bucket/key`, url: "s3://b/k" }]),
    );
    expect(disagree.message).toContain("disagree");
    expect(leaks(disagree)).toBe(false);
  });

  it("the redactor removes a secret whole even when another secret is part of it", () => {
    const redactor = new Redactor();
    redactor.add("adminuser");
    redactor.add("adminuserpassword");
    expect(redactor.redact("key adminuser secret adminuserpassword")).toBe(
      "key [REDACTED] secret [REDACTED]",
    );
  });

  it("a bad AWS_DEFAULT_REGION is named as that variable", () => {
    const error = errorOf(JSON.stringify([{ uri: "s3://b/k" }]), {
      AWS_DEFAULT_REGION: "Bad_Region",
    });
    expect(error.message).toContain("environment variable AWS_DEFAULT_REGION");
  });

  it("a null volume size is an error, not the default", () => {
    const error = errorOf(
      JSON.stringify([{ uri: "s3://b/k", volumeOptions: { kind: "dynamic", size: null } }]),
    );
    expect(error.message).toContain('field "volumeOptions.size"');
  });

  it("entry errors say where the array came from", () => {
    const error = errorOf(JSON.stringify([{ ur: "s3://b/k" }]));
    expect(error.message).toMatch(/^test\.json: datasets\[0\]/);
  });

  it("a one-line datasets array is read for duplicate keys once, not once per token", () => {
    // Exploratory test, 2026-12-07: JSON.stringify and json.dump write one line, and the line
    // count searched from every token to the next "\n", the end of such a text: a 4 MB array
    // took 54 s to be refused, the allowed 16 MiB would have taken a quarter of an hour.
    // Comments too (JSON5), and a key given twice at the end, so the whole text is scanned.
    const items = "1, /* n */ ".repeat(2_000);
    const text = `[{"uri":"s3://b/x.tar.gz", "name": [${items}1], "uri": "s3://b/y.tar.gz"}]`;
    const { result: error, read } = charactersSearched(() => errorOf(text));
    expect(error.code).toBe("CONFIG_INVALID");
    expect(error.message).toBe(
      'test.json: line 1: the key "uri" is given twice in one object (JSON keeps only the last one)',
    );
    // Each comment's end is searched for once: about the text's length (~22 kB) in all. Once
    // per token to the end of the text, it was ~45 million characters.
    expect(read).toBeLessThan(2 * text.length);
  });

  it("more datasets than the limit are refused before the text is scanned again for keys", () => {
    // A key given twice in the last entry: the count, known as soon as the text parsed, is
    // what is said, without a scan of the whole text first (exploratory test, 2026-12-07).
    const text = `[${'{"uri":"s3://b/a"},'.repeat(10_000)}{"uri":"s3://b/a","uri":"s3://b/b"}]`;
    const error = errorOf(text);
    expect(error.code).toBe("CONFIG_INVALID");
    expect(error.message).toBe("test.json: 10001 datasets is more than the limit of 10000");
    // What to do, too (exploratory tester, 2026-12-08).
    expect(error.hint).toMatch(/^split the datasets into several arrays and run dsfetch on each/);
  });

  it("the SPEC's short example buckets are accepted", () => {
    const [spec] = parseDatasetsText(JSON.stringify([{ uri: "s3://b/images/" }]), "x", {});
    expect(spec?.name).toBe("images");
  });
});
