// checkSupported: a download larger than its ephemeral volume is refused before any byte,
// and the hint says what to change: the dataset's size, or, after a fallback, shared storage
// (the dataset has no volumeOptions to raise: review, 2026-12-05).
import { describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import type { Settings } from "../../src/config/types.ts";
import type { ResolvedObject } from "../../src/fetch/resolve.ts";
import { fallbackTarget, targetFor } from "../../src/plan/target.ts";
import { checkSupported } from "../../src/stage/stage-dataset.ts";
import { thrown } from "../harness/thrown.ts";

const settings: Settings = {
  storageRoot: "/storage",
  team: "t",
  mountRoot: "/data",
  ephemeralRoot: "/eph",
};

const sixGiB: ResolvedObject = {
  kind: "object",
  bucket: "b",
  key: "huge.bin",
  etag: "0123456789abcdef0123456789abcdef",
  versionId: undefined,
  bytes: 6 * 1024 ** 3,
  lastModified: undefined,
  encryption: undefined,
  checksum: undefined,
  checksumRejected: [],
};

describe("checkSupported", () => {
  it("its own ephemeral volume too small: raise volumeOptions.size", () => {
    const [spec] = parseDatasetsValue(
      [{ uri: "s3://b/huge.bin", volumeOptions: { kind: "dynamic", size: "1Gi" } }],
      "test",
      {},
    );
    if (spec === undefined) throw new Error("no dataset");
    const error = thrown(() => checkSupported(spec, sixGiB, targetFor(spec, settings), undefined));
    expect(error.code).toBe("NO_SPACE");
    expect(error.hint).toBe("raise volumeOptions.size above the dataset's size");
  });

  it("a fallback volume of the default size too small: the fallback's reason, and shared storage as the fix", () => {
    const [spec] = parseDatasetsValue([{ uri: "s3://b/huge.bin" }], "test", {});
    if (spec === undefined) throw new Error("no dataset");
    const why =
      "shared storage is unavailable: /storage does not exist (is the shared volume mounted?)";
    const error = thrown(() => checkSupported(spec, sixGiB, fallbackTarget(spec, settings), why));
    expect(error.code).toBe("NO_SPACE");
    expect(error.message).toContain(`(the default size of a fallback volume: ${why})`);
    expect(error.hint).toContain("make shared storage available again");
  });
});
