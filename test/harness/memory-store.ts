// A store kept in the test's own process, for tests that measure or check dsfetch's handling
// of listings and small objects without the network: a StoreClient over a getter the test
// writes, and the answer of a whole body.
import type { ChecksumFields } from "../../src/fetch/checksum/head.ts";
import type { StoreClient } from "../../src/fetch/client.ts";
import type { GetResponse, ObjectGetter } from "../../src/fetch/object-get.ts";

/** A 200 answer carrying `body` whole. */
export function bodyAnswer(
  body: Buffer,
  etag: string | undefined,
  checksums: ChecksumFields = {},
): GetResponse {
  return {
    status: 200,
    readBody: async (onData) => {
      await onData(body);
    },
    discard: () => {},
    contentLength: body.length,
    contentRange: undefined,
    etag,
    partsCount: undefined,
    checksums,
    encryption: undefined,
  };
}

/** A client (with keys) whose requests go to `getter`. */
export function memoryClient(getter: Pick<ObjectGetter, "get" | "head">): StoreClient {
  return {
    endpointLabel: "memory",
    anonymous: false,
    credentialSource: "dataset",
    getter: getter as ObjectGetter,
    region: "us-east-1",
  };
}
