import { describe, expect, it } from "vitest";
import { parseDatasetsText } from "../../src/config/datasets-array.ts";
import { REDACTED, Redactor } from "../../src/config/redact.ts";
import type { DatasetSpec } from "../../src/config/types.ts";
import type { DsfetchError } from "../../src/errors.ts";
import { thrown } from "../harness/thrown.ts";

const SECRET = "SECRETSECRET123";
const TOKEN = "TOKENTOKEN456";
const KEYS = {
  awsAccessKeyId: "AKIAIOSFODNN7EXAMPLE",
  awsSecretAccessKey: SECRET,
  awsSessionToken: TOKEN,
};

const entries = (...list: unknown[]): string => JSON.stringify(list);

/** Every text of the error a user or a machine can see. */
function everything(error: DsfetchError): string {
  return [
    error.message,
    error.hint,
    error.expected,
    error.found,
    error.dataset,
    JSON.stringify(error.toJSON()),
  ]
    .filter((part) => part !== undefined)
    .join("\n");
}

describe("no configuration error contains a secret", () => {
  it.each<[string, string, Record<string, string>?]>([
    ["unknown field", entries({ uri: "s3://bucket/a.zip", ...KEYS, ur: "x" })],
    [
      "misspelt secret field carrying the secret",
      entries({
        uri: "s3://bucket/a.zip",
        awsAccessKeyId: "AKIAIOSFODNN7EXAMPLE",
        awsSecretAccesKey: SECRET,
      }),
    ],
    [
      "misspelt token field carrying the token",
      entries({
        uri: "s3://bucket/a.zip",
        awsAccessKeyId: "AKIAIOSFODNN7EXAMPLE",
        awsSecretAccessKey: SECRET,
        awsSesionToken: TOKEN,
      }),
    ],
    ["bad uri", entries({ uri: "gs://bucket/a.zip", ...KEYS })],
    ["missing uri", entries({ ...KEYS })],
    [
      "uri and url disagree",
      entries({ uri: "s3://bucket/a.zip", url: "s3://bucket/b.zip", ...KEYS }),
    ],
    ["bad name", entries({ uri: "s3://bucket/a.zip", name: "a/b", ...KEYS })],
    ["unusable derived name", entries({ uri: "s3://bucket/My Data.zip", ...KEYS })],
    [
      "etag on a prefix",
      entries({ uri: "s3://bucket/images/", etag: "d41d8cd98f00b204e9800998ecf8427e", ...KEYS }),
    ],
    ["bad etag", entries({ uri: "s3://bucket/a.zip", etag: "nope", ...KEYS })],
    ["versionId on a bucket", entries({ uri: "s3://bucket", versionId: "v1", ...KEYS })],
    [
      "bad volume size",
      entries({
        uri: "s3://bucket/a.zip",
        volumeOptions: { kind: "dynamic", size: "10GB" },
        ...KEYS,
      }),
    ],
    [
      "unknown volume field",
      entries({
        uri: "s3://bucket/a.zip",
        volumeOptions: { kind: "dynamic", secret: SECRET },
        ...KEYS,
      }),
    ],
    ["bad endpoint", entries({ uri: "s3://bucket/a.zip", endpoint: "ftp://host", ...KEYS })],
    [
      "endpoint carrying the secret as a password",
      entries({
        uri: "s3://bucket/a.zip",
        endpoint: `https://AKIAIOSFODNN7EXAMPLE:${SECRET}@minio.example.com`,
        ...KEYS,
      }),
    ],
    [
      "endpoint carrying the token as a user name",
      entries({ uri: "s3://bucket/a.zip", endpoint: `https://${TOKEN}@minio.example.com` }),
    ],
    [
      "AWS_ENDPOINT_URL carrying the secret",
      entries({ uri: "s3://bucket/a.zip", ...KEYS }),
      { AWS_ENDPOINT_URL: `http://AKIAIOSFODNN7EXAMPLE:${SECRET}@127.0.0.1:9000` },
    ],
    ["bad region", entries({ uri: "s3://bucket/a.zip", region: "Nowhere", ...KEYS })],
    ["bad pathStyle", entries({ uri: "s3://bucket/a.zip", pathStyle: "yes", ...KEYS })],
    [
      "duplicate names",
      entries({ uri: "s3://bucket/a.zip", ...KEYS }, { uri: "s3://bucket/a.tgz", ...KEYS }),
    ],
    [
      "secret key as an array",
      entries({ uri: "s3://bucket/a.zip", ...KEYS, awsSecretAccessKey: [SECRET] }),
    ],
    [
      "secret key as an object",
      entries({ uri: "s3://bucket/a.zip", ...KEYS, awsSecretAccessKey: { value: SECRET } }),
    ],
    [
      "secret key with surrounding spaces",
      entries({ uri: "s3://bucket/a.zip", ...KEYS, awsSecretAccessKey: ` ${SECRET} ` }),
    ],
    [
      "secret key with a trailing newline",
      entries({ uri: "s3://bucket/a.zip", ...KEYS, awsSecretAccessKey: `${SECRET}\n` }),
    ],
    ["token as an array", entries({ uri: "s3://bucket/a.zip", ...KEYS, awsSessionToken: [TOKEN] })],
    [
      "token with surrounding spaces",
      entries({ uri: "s3://bucket/a.zip", ...KEYS, awsSessionToken: ` ${TOKEN}` }),
    ],
    ["token alone", entries({ uri: "s3://bucket/a.zip", awsSessionToken: TOKEN })],
    [
      "secret and token without the access key",
      entries({ uri: "s3://bucket/a.zip", awsSecretAccessKey: SECRET, awsSessionToken: TOKEN }),
    ],
    [
      "access key of the wrong type",
      entries({ uri: "s3://bucket/a.zip", ...KEYS, awsAccessKeyId: 42 }),
    ],
    [
      "secret given as the access key too",
      entries({ uri: "s3://bucket/a.zip", awsAccessKeyId: SECRET, awsSessionToken: TOKEN }),
    ],
    ["a single object at top level", JSON.stringify({ uri: "s3://bucket/a.zip", ...KEYS })],
    [
      "invalid JSON just after the secret",
      `[{ "uri": "s3://bucket/a.zip", "awsSecretAccessKey": "${SECRET}" "awsSessionToken": "${TOKEN}" }]`,
    ],
    [
      "invalid JSON inside the secret",
      `[{ "uri": "s3://bucket/a.zip", "awsSecretAccessKey": "${SECRET}\n", "awsSessionToken": "${TOKEN}" }]`,
    ],
    [
      "unterminated secret",
      `[{ "uri": "s3://bucket/a.zip", "awsSessionToken": "${TOKEN}", "awsSecretAccessKey": "${SECRET}`,
    ],
  ])("%s", (_what, text, env = {}) => {
    const error = thrown(() => parseDatasetsText(text, "datasets.json", env));
    expect(error.code).toBe("CONFIG_INVALID");
    const seen = everything(error);
    expect(seen).not.toContain(SECRET);
    expect(seen).not.toContain(TOKEN);
  });
});

describe("Redactor", () => {
  const specs: readonly DatasetSpec[] = parseDatasetsText(
    entries(
      { uri: "s3://bucket/a.zip", ...KEYS },
      {
        uri: "s3://bucket/b.zip",
        awsAccessKeyId: "AKIAOTHERKEY00000000",
        awsSecretAccessKey: "wJalr/XUtnFEMI+K7MDENG=",
      },
      { uri: "s3://bucket/c.zip" },
    ),
    "datasets.json",
    {},
  );

  it("redacts every key, secret and token of the datasets from arbitrary text", () => {
    const redactor = new Redactor().addDatasets(specs);
    const text = `SDK said: bad signature for ${SECRET} (token ${TOKEN}, key AKIAIOSFODNN7EXAMPLE); retry ${SECRET}\nother: wJalr/XUtnFEMI+K7MDENG= AKIAOTHERKEY00000000`;
    const out = redactor.redact(text);
    for (const secret of [
      SECRET,
      TOKEN,
      "AKIAIOSFODNN7EXAMPLE",
      "AKIAOTHERKEY00000000",
      "wJalr/XUtnFEMI+K7MDENG=",
    ]) {
      expect(out).not.toContain(secret);
    }
    expect(out).toBe(
      `SDK said: bad signature for ${REDACTED} (token ${REDACTED}, key ${REDACTED}); retry ${REDACTED}\nother: ${REDACTED} ${REDACTED}`,
    );
  });

  it("redacts the secrets of the AWS environment variables", () => {
    const redactor = new Redactor().addEnv({
      AWS_ACCESS_KEY_ID: "AKIAENVKEY0000000000",
      AWS_SECRET_ACCESS_KEY: SECRET,
      AWS_SESSION_TOKEN: TOKEN,
      AWS_REGION: "us-east-1",
    });
    expect(redactor.redact(`${SECRET}|${TOKEN}|AKIAENVKEY0000000000|us-east-1`)).toBe(
      `${REDACTED}|${REDACTED}|${REDACTED}|us-east-1`,
    );
  });

  it("leaves a short access key ID (a MinIO user named like its team) in paths and names", () => {
    const redactor = new Redactor()
      .addEnv({ AWS_ACCESS_KEY_ID: "vision", AWS_SECRET_ACCESS_KEY: SECRET })
      .addDatasets(
        parseDatasetsText(
          entries({
            uri: "s3://vision-data/a.zip",
            awsAccessKeyId: "ml",
            awsSecretAccessKey: SECRET,
          }),
          "datasets.json",
          {},
        ),
      );
    expect(redactor.redact(`claimName: vision-data\n/storage/vision/data/ml ${SECRET}`)).toBe(
      `claimName: vision-data\n/storage/vision/data/ml ${REDACTED}`,
    );
  });

  it("treats secrets as literal text, not patterns", () => {
    const redactor = new Redactor();
    redactor.add("a+b.c*d/e$f");
    expect(redactor.redact("x a+b.c*d/e$f y aabbcccdd/e$f")).toBe(`x ${REDACTED} y aabbcccdd/e$f`);
  });

  it("leaves text without secrets unchanged", () => {
    const redactor = new Redactor().addDatasets(specs);
    const text = 'datasets[2] ("c"): s3://bucket/c.zip: 403 Access Denied';
    expect(redactor.redact(text)).toBe(text);
  });

  it("ignores missing and very short values, which would redact ordinary words", () => {
    const redactor = new Redactor();
    redactor.add(undefined);
    redactor.add("");
    redactor.add("data");
    redactor.add("abcdefg");
    redactor.add("abcdefgh");
    // A secret "data" turned `--json`'s "datasets" into "[REDACTED]sets" (review, 2026-12-05).
    expect(redactor.redact('{"datasets": "/t/data" abcdefg abcdefgh abcdefghi')).toBe(
      `{"datasets": "/t/data" abcdefg ${REDACTED} ${REDACTED}i`,
    );
  });

  it("adds nothing for datasets without credentials", () => {
    const redactor = new Redactor().addDatasets(
      parseDatasetsText('[{"uri":"s3://bucket/a.zip"}]', "x", {}),
    );
    expect(redactor.redact("bucket a.zip AKIA")).toBe("bucket a.zip AKIA");
  });
});
