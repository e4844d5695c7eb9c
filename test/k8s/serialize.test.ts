import { describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import type { DatasetSpec } from "../../src/config/types.ts";
import { bytesToQuantity } from "../../src/k8s/quantity.ts";
import { serializeDataset, serializeDatasets } from "../../src/k8s/serialize.ts";
import { thrown } from "../harness/thrown.ts";

function parse(entries: unknown[], env: Record<string, string> = {}): readonly DatasetSpec[] {
  return parseDatasetsValue(entries, "test", env);
}

function stripIndex(specs: readonly DatasetSpec[]): unknown[] {
  return specs.map(({ index: _index, ...rest }) => rest);
}

describe("serializeDataset", () => {
  it("writes the parsed form back: canonical uri, explicit name, bare etag, size as given", () => {
    const [spec] = parse([
      {
        url: "s3://b/data/mnist.zip",
        etag: '"ABCDEF0123456789ABCDEF0123456789-12"',
        versionId: "3HL4kqtJlcpXroDTDmJ",
        volumeOptions: { kind: "dynamic", size: 1073741824 },
      },
    ]);
    if (spec === undefined) throw new Error("no dataset");
    expect(serializeDataset(spec)).toEqual({
      uri: "s3://b/data/mnist.zip",
      name: "mnist",
      etag: "abcdef0123456789abcdef0123456789-12",
      versionId: "3HL4kqtJlcpXroDTDmJ",
      volumeOptions: { kind: "dynamic", size: "1073741824" },
    });
  });

  it("does not pin a region nothing gave here (the us-east-1 default): the pods' AWS_REGION decides", () => {
    const [defaulted, given] = parse([
      { uri: "s3://b/a" },
      { uri: "s3://b/c", region: "us-east-1" },
    ]);
    if (defaulted === undefined || given === undefined) throw new Error("no dataset");
    expect(serializeDataset(defaulted).region).toBeUndefined();
    // Said in the datasets array: kept, even when it is the default's value.
    expect(serializeDataset(given).region).toBe("us-east-1");
  });

  it("pins the endpoint and region resolved from this environment", () => {
    const env = { AWS_ENDPOINT_URL: "https://minio.example.com:9000/", AWS_REGION: "eu-west-1" };
    const specs = parse([{ uri: "s3://b/k" }], env);
    expect(JSON.parse(serializeDatasets(specs))).toEqual([
      {
        uri: "s3://b/k",
        name: "k",
        endpoint: "https://minio.example.com:9000",
        region: "eu-west-1",
      },
    ]);
  });

  it("writes pathStyle only when it differs from what the endpoint implies", () => {
    const specs = parse([
      { uri: "s3://b/a", endpoint: "http://10.0.0.5:9000" }, // path style implied
      { uri: "s3://b/b", endpoint: "http://localhost:9000", pathStyle: false },
      { uri: "s3://b/c", endpoint: "https://minio.internal", pathStyle: true },
      { uri: "s3://b/d", pathStyle: false }, // AWS, virtual host: implied
    ]);
    expect(specs.map((spec) => serializeDataset(spec).pathStyle)).toEqual([
      undefined,
      false,
      true,
      undefined,
    ]);
  });

  it("round-trips through the parser, whatever the pods' environment", () => {
    const env = { AWS_ENDPOINT_URL_S3: "http://localhost:9000", AWS_DEFAULT_REGION: "ap-south-1" };
    const specs = parse(
      [
        { uri: "s3://bucket" },
        { uri: "s3://b/images/", name: "imgs" },
        { uri: "s3://b/x.tar.gz", etag: "0123456789abcdef0123456789abcdef" },
        { uri: "s3://b/y", versionId: "v1", volumeOptions: { kind: "dynamic", size: "1.5G" } },
        {
          uri: "s3://b/z",
          endpoint: "https://s3.example.com",
          region: "us-west-2",
          pathStyle: true,
        },
      ],
      env,
    );
    const text = serializeDatasets(specs);
    const podEnv = { AWS_ENDPOINT_URL: "https://elsewhere.example.com", AWS_REGION: "eu-north-1" };
    expect(stripIndex(parse(JSON.parse(text), podEnv))).toEqual(stripIndex(specs));
    expect(text.endsWith("]\n")).toBe(true);
  });

  it("never writes credentials: it refuses them", () => {
    const specs = parse([
      {
        uri: "s3://b/k",
        awsAccessKeyId: "AKIAIOSFODNN7EXAMPLE",
        awsSecretAccessKey: "secret/value",
      },
    ]);
    const [spec] = specs;
    if (spec === undefined) throw new Error("no dataset");
    for (const error of [
      thrown(() => serializeDataset(spec)),
      thrown(() => serializeDatasets(specs)),
    ]) {
      expect(error.code).toBe("USAGE");
      expect(JSON.stringify(error.toJSON())).not.toMatch(/AKIA|secret\/value/);
    }
  });
});

describe("bytesToQuantity", () => {
  it.each<[number, string]>([
    [1, "1"],
    [999, "999"],
    [1000, "1k"],
    [1024, "1Ki"],
    [1536, "1536"],
    [1_000_000, "1M"],
    [1_048_576, "1Mi"],
    [1_500_000_000, "1500M"],
    [5 * 2 ** 30, "5Gi"],
    [10 * 2 ** 30, "10Gi"],
    [1.5 * 2 ** 30, "1536Mi"],
    [2 ** 40, "1Ti"],
    [2 * 10 ** 12, "2T"],
    [1_024_000, "1024k"],
    [1_536_000, "1536k"],
    [Number.MAX_SAFE_INTEGER, "9007199254740991"],
  ])("%d → %s", (bytes, expected) => {
    expect(bytesToQuantity(bytes)).toBe(expected);
  });

  it("refuses what is not a positive whole number of bytes", () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 60]) {
      expect(() => bytesToQuantity(bad)).toThrow(RangeError);
    }
  });
});
