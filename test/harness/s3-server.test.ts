import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, describe, expect, it } from "vitest";
import {
  adminClient,
  anonymousClient,
  createBucket,
  deleteObject,
  putMany,
  putMultipart,
  putObject,
  s3Info,
  testEnv,
  uniqueBucketName,
} from "./s3.ts";

const admin = adminClient();
const anon = anonymousClient();
afterAll(() => {
  admin.destroy();
  anon.destroy();
});

async function bytes(body: { transformToByteArray(): Promise<Uint8Array> } | undefined) {
  if (!body) throw new Error("no body");
  return Buffer.from(await body.transformToByteArray());
}

describe("real S3 harness", () => {
  it("is a real server on loopback and says which one", () => {
    const info = s3Info();
    expect(["env", "testcontainers", "minio-binary"]).toContain(info.kind);
    expect(info.region).toBe("us-east-1");
    expect(testEnv()).toEqual({
      AWS_ENDPOINT_URL: info.endpoint,
      AWS_ACCESS_KEY_ID: info.accessKeyId,
      AWS_SECRET_ACCESS_KEY: info.secretAccessKey,
      AWS_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
    });
  });

  it("makes valid, unique bucket names", () => {
    const a = uniqueBucketName("My_Test.File--Name!!".repeat(10));
    const b = uniqueBucketName("My_Test.File--Name!!".repeat(10));
    expect(a).not.toBe(b);
    for (const name of [a, b, uniqueBucketName(""), uniqueBucketName("---")]) {
      expect(name).toMatch(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/);
    }
  });

  it("keeps old versions of a key in a versioned bucket", async () => {
    const bucket = await createBucket("harness-versioned", { versioned: true });
    const v1Body = Buffer.from([0, 1, 2, 255, 254, 10, 13, 0]);
    const v1 = await putObject(bucket, "data/file.bin", v1Body);
    const v2 = await putObject(bucket, "data/file.bin", "second version");
    expect(v1.versionId).toBeTruthy();
    expect(v2.versionId).toBeTruthy();
    expect(v1.versionId).not.toBe(v2.versionId);
    expect(v1.etag).toMatch(/^[0-9a-f]{32}$/);

    const old = await admin.send(
      new GetObjectCommand({ Bucket: bucket, Key: "data/file.bin", VersionId: v1.versionId }),
    );
    expect((await bytes(old.Body)).equals(v1Body)).toBe(true);
    expect(old.ETag?.replace(/"/g, "")).toBe(v1.etag);

    const latest = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: "data/file.bin" }));
    expect((await bytes(latest.Body)).toString()).toBe("second version");

    const marker = await deleteObject(bucket, "data/file.bin");
    expect(marker).toBeTruthy();
    const stillThere = await admin.send(
      new GetObjectCommand({ Bucket: bucket, Key: "data/file.bin", VersionId: v1.versionId }),
    );
    expect((await bytes(stillThere.Body)).equals(v1Body)).toBe(true);
  });

  it("does real multipart uploads with -N ETags", async () => {
    const bucket = await createBucket("harness-multipart");
    const body = Buffer.alloc(5 * 1024 * 1024 * 2 + 123, 7);
    const put = await putMultipart(bucket, "big.bin", body, 5 * 1024 * 1024);
    expect(put.etag).toMatch(/^[0-9a-f]{32}-3$/);
    const got = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: "big.bin" }));
    expect((await bytes(got.Body)).equals(body)).toBe(true);
  });

  it("serves a public-read bucket to anonymous clients, and only that one", async () => {
    const pub = await createBucket("harness-public", { publicRead: true });
    const keys = await putMany(pub, "many/", 100, (i) => Buffer.from(`object ${i}`));
    expect(keys[7]).toBe("many/7");

    const listed = await anon.send(new ListObjectsV2Command({ Bucket: pub, Prefix: "many/" }));
    expect(listed.KeyCount).toBe(100);
    const got = await anon.send(new GetObjectCommand({ Bucket: pub, Key: "many/42" }));
    expect((await bytes(got.Body)).toString()).toBe("object 42");
    await expect(
      anon.send(new PutObjectCommand({ Bucket: pub, Key: "nope", Body: "x" })),
    ).rejects.toThrow();

    const priv = await createBucket("harness-private");
    await putObject(priv, "secret.txt", "no");
    await expect(
      anon.send(new GetObjectCommand({ Bucket: priv, Key: "secret.txt" })),
    ).rejects.toThrow();
  });
});
