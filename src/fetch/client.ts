/**
 * S3 clients, one per distinct (endpoint, region, path style, credentials) of the datasets.
 * src/fetch/ is the only place that imports the AWS SDK, and only for listings: GET and
 * HEAD go through object-get.ts, so object datasets never load it (~60 ms, ~25 MiB).
 */
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { S3Client } from "@aws-sdk/client-s3";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import type { Credentials, DatasetSpec } from "../config/types.ts";
import { MAX_SOCKETS, ObjectGetter } from "./object-get.ts";
import type { SigningCredentials } from "./sigv4.ts";

export interface StoreClient {
  /** The AWS SDK client, loaded on first use (listings). */
  sdk(): Promise<S3Client>;
  /** Endpoint for messages ("AWS S3" when none is set). */
  readonly endpointLabel: string;
  /** True when requests go unsigned (no keys given and the AWS chain found none). */
  readonly anonymous: boolean;
  /** Where the credentials came from, for messages (never the credentials themselves). */
  readonly credentialSource: "dataset" | "aws-chain" | "anonymous";
  /** Signed GETs over plain node:http for the download hot path (object-get.ts). */
  readonly getter: ObjectGetter;
}

export class ClientPool {
  private readonly clients = new Map<string, Promise<PooledClient>>();
  private chainProbe: Promise<boolean> | undefined;
  private readonly idleTimeoutMs: number | undefined;

  /** `idleTimeoutMs`: a connection silent this long is abandoned (object-get.ts). */
  constructor(options: { idleTimeoutMs?: number | undefined } = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs;
  }

  /** The client for a dataset; datasets with the same store and credentials share one. */
  clientFor(spec: DatasetSpec): Promise<StoreClient> {
    const { url, region, forcePathStyle } = spec.endpoint;
    const who = spec.credentials === undefined ? "chain" : `keys:${spec.credentials.accessKeyId}`;
    const key = JSON.stringify([url, region, forcePathStyle, who, spec.credentials?.sessionToken]);
    let client = this.clients.get(key);
    if (client === undefined) {
      client = this.create(spec);
      this.clients.set(key, client);
    }
    return client;
  }

  destroy(): void {
    for (const client of this.clients.values()) {
      client
        .then((c) => {
          c.getter.destroy();
          if (c.sdkLoaded()) {
            c.sdk().then(
              (s3) => s3.destroy(),
              () => {},
            );
          }
        })
        .catch(() => {});
    }
    this.clients.clear();
  }

  private async create(spec: DatasetSpec): Promise<PooledClient> {
    const { url, region } = spec.endpoint;
    const endpointLabel = url ?? `AWS S3 (${region})`;
    const idleTimeoutMs = this.idleTimeoutMs;
    const make = (
      credentialSource: StoreClient["credentialSource"],
      signing: () => Promise<SigningCredentials | undefined>,
    ): PooledClient => {
      let sdk: Promise<S3Client> | undefined;
      return {
        endpointLabel,
        anonymous: credentialSource === "anonymous",
        credentialSource,
        getter: new ObjectGetter({ endpoint: spec.endpoint, credentials: signing, idleTimeoutMs }),
        sdk: () => {
          sdk ??= sdkClient(spec, credentialSource === "anonymous" ? undefined : signing);
          return sdk;
        },
        sdkLoaded: () => sdk !== undefined,
      };
    };
    if (spec.credentials !== undefined) {
      const keys: Credentials = { ...spec.credentials };
      return make("dataset", async () => keys);
    }
    if (await this.chainHasCredentials()) {
      return make("aws-chain", refreshingProvider(fromNodeProviderChain()));
    }
    // Public buckets are read anonymously: requests go out unsigned (aws-sdk-js-v3 #2321).
    return make("anonymous", async () => undefined);
  }

  /** Whether the standard AWS chain (env, profile, web identity, IMDS) yields credentials. */
  private chainHasCredentials(): Promise<boolean> {
    this.chainProbe ??= fromNodeProviderChain()().then(
      () => true,
      () => false,
    );
    return this.chainProbe;
  }
}

interface ExpiringCredentials extends SigningCredentials {
  readonly expiration?: Date | undefined;
}

/** Caches chain credentials and fetches new ones 5 minutes before they expire. */
function refreshingProvider(
  provider: () => Promise<ExpiringCredentials>,
): () => Promise<ExpiringCredentials> {
  let current: Promise<ExpiringCredentials> | undefined;
  let expiresAt = Number.POSITIVE_INFINITY;
  return () => {
    if (current === undefined || Date.now() > expiresAt - 5 * 60_000) {
      const next = provider();
      current = next;
      next.then(
        (credentials) => {
          expiresAt = credentials.expiration?.getTime() ?? Number.POSITIVE_INFINITY;
        },
        () => {
          current = undefined;
        },
      );
    }
    return current;
  };
}

interface PooledClient extends StoreClient {
  sdkLoaded(): boolean;
}

/** The SDK client for listings, with our retry policy and without its checksum validation. */
async function sdkClient(
  spec: DatasetSpec,
  credentials: (() => Promise<SigningCredentials | undefined>) | undefined,
): Promise<S3Client> {
  const [{ S3Client }, { NodeHttpHandler }] = await Promise.all([
    import("@aws-sdk/client-s3"),
    import("@smithy/node-http-handler"),
  ]);
  const { url, region, forcePathStyle } = spec.endpoint;
  const base = {
    region,
    forcePathStyle,
    ...(url === undefined ? {} : { endpoint: url }),
    // We verify bytes ourselves (MD5, multipart MD5, additional checksums); the SDK's own
    // response validation breaks on S3-compatible stores and costs throughput
    // (aws-sdk-js-v3 #6827, #7657; ../shared/MEASURED.md).
    requestChecksumCalculation: "WHEN_REQUIRED" as const,
    responseChecksumValidation: "WHEN_REQUIRED" as const,
    // One retry policy for everything: ours (fetch/retry.ts), not the SDK's.
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
      connectionTimeout: 10_000,
      requestTimeout: 60_000,
    }),
  };
  if (credentials === undefined) {
    return new S3Client({
      ...base,
      credentials: { accessKeyId: "", secretAccessKey: "" },
      signer: { sign: async (request) => request },
    });
  }
  const provider = async () => {
    const found = await credentials();
    if (found === undefined) throw new Error("no credentials");
    return found;
  };
  return new S3Client({ ...base, credentials: provider });
}
