// A manifest of one 3-byte file, for tests of publishing (publish.ts, occupant.ts).
import { MANIFEST_VERSION, type Manifest, type WrittenFiles } from "../../src/volumes/manifest.ts";

export function testManifest(uri: string, etag: string, file: string): Manifest<WrittenFiles> {
  return {
    version: MANIFEST_VERSION,
    name: "ds",
    uri,
    endpoint: undefined,
    kind: "object",
    etag,
    versionId: undefined,
    listingDigest: undefined,
    bytes: 3,
    files: [{ path: file, bytes: 3 }],
    verification: "md5",
    createdAt: "2026-12-04T00:00:00.000Z",
    host: "test",
  };
}
