// A store that answered another version than the pinned versionId (fetch/object-get.ts
// VersionIgnored): the hint says version IDs are case-sensitive only for a UUID pasted in
// upper case (MinIO's are lower-case UUIDs); an AWS-style ID is mixed-case by nature.
import { describe, expect, it } from "vitest";
import { S3HttpError } from "../../src/fetch/object-get.ts";
import { classifyS3Error } from "../../src/fetch/s3-errors.ts";

const ignored = (versionId: string) =>
  classifyS3Error(new S3HttpError(501, "VersionIgnored", "another version answered", {}), {
    dataset: "v",
    uri: "s3://b/v.bin",
    bucket: "b",
    versionId,
    endpoint: "http://store",
    anonymous: false,
    action: "reading",
  });

describe("a pinned version the store did not serve", () => {
  it("an upper-case UUID: the hint gives the lower-case form", () => {
    const error = ignored("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
    expect(error.code).toBe("NO_SUCH_VERSION");
    expect(error.hint).toContain("version IDs are case-sensitive");
    expect(error.hint).toContain('"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"?');
  });

  it("an AWS-style mixed-case ID, or a lower-case UUID: the store does not serve versions", () => {
    for (const versionId of [
      "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
      "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    ]) {
      const error = ignored(versionId);
      expect(error.hint, versionId).not.toContain("case-sensitive");
      expect(error.hint, versionId).toContain("the store does not serve versions by versionId");
    }
  });
});
