// Our SigV4 signer (used for every GET) must produce exactly what the AWS SDK's signer does.
import { Hash } from "@smithy/hash-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { describe, expect, it } from "vitest";
import { SigV4Signer, uriEncode } from "../../src/fetch/sigv4.ts";

const credentials = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const date = new Date("2026-11-22T01:02:03Z");

async function sdkAuthorization(
  path: string,
  query: Record<string, string>,
  headers: Record<string, string>,
  sessionToken?: string,
): Promise<string> {
  const signer = new SignatureV4({
    credentials: { ...credentials, sessionToken },
    region: "eu-west-3",
    service: "s3",
    sha256: Hash.bind(null, "sha256"),
    uriEscapePath: false,
    applyChecksum: true,
  });
  const request = new HttpRequest({
    method: "GET",
    protocol: "http:",
    hostname: "127.0.0.1",
    port: 9000,
    path,
    query,
    headers: {
      ...headers,
      host: "127.0.0.1:9000",
      "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    },
  });
  const signed = await signer.sign(request, { signingDate: date });
  return String(signed.headers.authorization);
}

describe("SigV4Signer", () => {
  const cases: Array<[string, string, Record<string, string>, Record<string, string>]> = [
    ["plain key", "photos/cat.jpg", {}, {}],
    [
      "ranged, pinned, versioned",
      "data/part-00001.parquet",
      { versionId: "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY" },
      { range: "bytes=0-8388607", "if-match": '"0123456789abcdef0123456789abcdef"' },
    ],
    ["odd characters", "dir with space/ünïcödé+plus=eq&amp;~tilde*star(paren)'q'.txt", {}, {}],
    ["part number", "big.bin", { partNumber: "3" }, {}],
  ];
  for (const [label, key, query, headers] of cases) {
    it(`matches the SDK's signature: ${label}`, async () => {
      const path = `/bucket/${uriEncode(key, true)}`;
      const ours = new SigV4Signer("eu-west-3").sign(
        { method: "GET", host: "127.0.0.1:9000", path, query, headers },
        credentials,
        date,
      );
      expect(ours.authorization).toBe(await sdkAuthorization(path, query, headers));
    });
  }

  it("signs the session token too", async () => {
    const ours = new SigV4Signer("eu-west-3").sign(
      { method: "GET", host: "127.0.0.1:9000", path: "/b/k", query: {}, headers: {} },
      { ...credentials, sessionToken: "TOKEN/with+chars" },
      date,
    );
    expect(ours["x-amz-security-token"]).toBe("TOKEN/with+chars");
    expect(ours.authorization).toBe(await sdkAuthorization("/b/k", {}, {}, "TOKEN/with+chars"));
  });

  it("encodes like RFC 3986, keeping unreserved characters", () => {
    expect(uriEncode("a b+c/d~e_f.g-h*", false)).toBe("a%20b%2Bc%2Fd~e_f.g-h%2A");
    expect(uriEncode("a/b", true)).toBe("a/b");
    expect(uriEncode("é")).toBe("%C3%A9");
  });

  it("encodes every string as the byte-by-byte rule does (the fast path for plain keys too)", () => {
    // The rule itself, written out: unreserved bytes kept, "/" kept when asked, else %XX.
    const reference = (value: string, keepSlash: boolean): string =>
      [...Buffer.from(value, "utf8")]
        .map((byte) => {
          const char = String.fromCharCode(byte);
          return /[A-Za-z0-9\-_.~]/.test(char) || (keepSlash && char === "/")
            ? char
            : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
        })
        .join("");
    const alphabet = ["a", "Z", "0", "-", "_", ".", "~", "/", " ", "+", "*", "%", "é", "😀", "\n"];
    for (let i = 0; i < 2000; i++) {
      let value = "";
      for (let n = i % 9; n > 0; n--) value += alphabet[(i * 7 + n * 13) % alphabet.length];
      for (const keepSlash of [false, true]) {
        expect(uriEncode(value, keepSlash), JSON.stringify(value)).toBe(
          reference(value, keepSlash),
        );
      }
    }
  });

  it("signs requests a second apart with their own x-amz-date", () => {
    const signer = new SigV4Signer("us-east-1");
    const request = { method: "GET" as const, host: "h", path: "/b/k", query: {}, headers: {} };
    const dates = [
      "2026-12-06T17:15:00.000Z",
      "2026-12-06T17:15:00.999Z",
      "2026-12-06T17:15:01.000Z",
      "2026-12-07T00:00:00.000Z",
    ].map((iso) => signer.sign(request, credentials, new Date(iso))["x-amz-date"]);
    expect(dates).toEqual([
      "20261206T171500Z",
      "20261206T171500Z",
      "20261206T171501Z",
      "20261207T000000Z",
    ]);
  });
});
