/**
 * S3 clients, one per distinct (endpoint, region, path style, credentials) of the datasets.
 * Requests (GET, HEAD, LIST) go through object-get.ts; from the AWS SDK only the standard
 * credential chain is used (env, profile, web identity, instance metadata), loaded only when
 * the environment's keys do not decide (environmentCredentials).
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import type { Credentials, DatasetSpec } from "../config/types.ts";
import { DsfetchError, type ErrorCode } from "../errors.ts";
import { ObjectGetter } from "./object-get.ts";
import { credentialChainHandler } from "./proxy-agent.ts";
import type { SigningCredentials } from "./sigv4.ts";
import { tlsModule } from "./tls-module.ts";

export interface StoreClient {
  /** Endpoint for messages ("AWS S3" when none is set). */
  readonly endpointLabel: string;
  /** True when requests go unsigned (no keys given and the AWS chain found none). */
  readonly anonymous: boolean;
  /** Where the credentials came from, for messages (never the credentials themselves). */
  readonly credentialSource: "dataset" | "aws-chain" | "anonymous";
  /** Signed GET, HEAD and LIST requests (object-get.ts, list-objects.ts). */
  readonly getter: ObjectGetter;
  /** The region its requests are signed for. */
  readonly region: string;
}

/**
 * AWS_CA_BUNDLE, as the AWS CLI and SDKs read it: a PEM file of certificate authorities
 * trusted besides Node's own (a store with a private CA). It was ignored (review, 2026-12-05);
 * NODE_EXTRA_CA_CERTS, read by Node itself, works too.
 */
function caBundle(env: NodeJS.ProcessEnv): ConnectionOptions | undefined {
  const path = env.AWS_CA_BUNDLE;
  if (path === undefined || path === "") return undefined;
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (error) {
    throw new DsfetchError(
      "USAGE",
      `AWS_CA_BUNDLE: cannot read ${path}: ${(error as Error).message}`,
      { hint: "give the path of a PEM file of certificate authorities, or unset AWS_CA_BUNDLE" },
    );
  }
  // Node's default set (its roots, and NODE_EXTRA_CA_CERTS where Node has getCACertificates),
  // then the bundle: an explicit `ca` replaces the default set.
  const tls = tlsModule();
  const defaults =
    (tls as { getCACertificates?: (kind: string) => string[] }).getCACertificates?.("default") ??
    tls.rootCertificates;
  return { ca: [...defaults, pem] };
}

export class ClientPool {
  private readonly clients = new Map<string, Promise<StoreClient>>();
  /** Buckets found in another region than asked for (region-redirect.ts), by store. */
  private readonly bucketRegions = new Map<string, string>();
  private chainProbe: Promise<ChainProbe> | undefined;
  private chainProvider: Promise<() => Promise<ExpiringCredentials>> | undefined;
  private readonly idleTimeoutMs: number | undefined;

  /** `idleTimeoutMs`: a connection silent this long is abandoned (object-get.ts). */
  constructor(options: { idleTimeoutMs?: number | undefined } = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs;
  }

  /**
   * The client for a dataset; datasets with the same store and credentials share one. A
   * bucket whose region was learned (learnRegion) gets a client for that region: every later
   * dataset of it, and the same dataset staged again (a fallback to an ephemeral volume, found
   * in review: its downloads went to the first region again).
   */
  clientFor(asked: DatasetSpec): Promise<StoreClient> {
    const learned = this.bucketRegions.get(this.bucketKey(asked));
    const spec =
      learned === undefined || learned === asked.endpoint.region
        ? asked
        : { ...asked, endpoint: { ...asked.endpoint, region: learned, regionDefaulted: false } };
    const { url, region, forcePathStyle, requesterPays } = spec.endpoint;
    const who = spec.credentials === undefined ? "chain" : `keys:${spec.credentials.accessKeyId}`;
    const key = JSON.stringify([
      url,
      region,
      forcePathStyle,
      requesterPays === true,
      who,
      spec.credentials?.sessionToken,
    ]);
    let client = this.clients.get(key);
    if (client === undefined) {
      client = this.create(spec);
      this.clients.set(key, client);
    }
    // The failed setup is cached with the client, for every dataset that shares it: each
    // gets it as its own error, naming it. They all carried the first dataset's name, in
    // the message and in `--json`'s "dataset" (README audit, 2026-12-07).
    return client.catch((error: unknown) => {
      throw error instanceof ClientSetupFailure ? error.forDataset(asked.name) : error;
    });
  }

  /** The store said the dataset's bucket is in `region` (region-redirect.ts). */
  learnRegion(spec: DatasetSpec, region: string): void {
    this.bucketRegions.set(this.bucketKey(spec), region);
  }

  /** Whether requests for the dataset's bucket already go to a region learned from the store. */
  regionLearned(spec: DatasetSpec): string | undefined {
    return this.bucketRegions.get(this.bucketKey(spec));
  }

  private bucketKey(spec: DatasetSpec): string {
    return JSON.stringify([spec.endpoint.url, spec.endpoint.region, spec.location.bucket]);
  }

  destroy(): void {
    for (const client of this.clients.values()) {
      client.then((c) => c.getter.destroy()).catch(() => {});
    }
    this.clients.clear();
  }

  private async create(spec: DatasetSpec): Promise<StoreClient> {
    const { url, region } = spec.endpoint;
    const endpointLabel = url ?? `AWS S3 (${region})`;
    const idleTimeoutMs = this.idleTimeoutMs;
    const make = (
      credentialSource: StoreClient["credentialSource"],
      signing: () => Promise<SigningCredentials | undefined>,
    ): StoreClient => ({
      endpointLabel,
      region,
      anonymous: credentialSource === "anonymous",
      credentialSource,
      getter: new ObjectGetter({
        endpoint: spec.endpoint,
        credentials: signing,
        idleTimeoutMs,
        tls: caBundle(process.env),
      }),
    });
    if (spec.credentials !== undefined) {
      const keys: Credentials = { ...spec.credentials };
      return make("dataset", async () => keys);
    }
    const fromEnvironment = environmentCredentials(process.env);
    if (fromEnvironment !== undefined) {
      return make("aws-chain", async () => fromEnvironment);
    }
    const partial = partialEnvironmentKeys(process.env);
    if (partial !== undefined) throw brokenCredentialSetup(partial);
    const chain = await this.chainCredentials();
    if (chain.found) {
      return make("aws-chain", refreshingProvider(await this.chain()));
    }
    // A profile asked for by name that yields nothing is a mistake, not a public bucket: gone
    // anonymous, it failed later as "access denied … anonymous" without naming the profile,
    // and on a public bucket it "worked" without a word (review, 2026-12-05).
    const profile = process.env.AWS_PROFILE;
    if (profile) {
      throw brokenCredentialSetup(
        `AWS_PROFILE is set to ${JSON.stringify(profile)}, but no credentials could be loaded with it (${chain.reason})`,
      );
    }
    // Web identity (EKS IRSA) or container credentials asked for that yield nothing: gone
    // anonymous, an STS that could not be reached (an egress proxy, its CA) showed up later as
    // "access denied … anonymous", its reason lost.
    const configured = configuredChainSource(process.env);
    if (configured !== undefined) {
      if (chain.error instanceof DsfetchError) throw chain.error;
      // Unreachable, throttled, 5xx (after the SDK's own retries): TRANSIENT, as a store that
      // stays unreachable; a refusal (the role, the token, the proxy's 407): ACCESS_DENIED.
      const transient = chainFailureIsTransient(chain.error);
      throw new ClientSetupFailure(
        transient ? "TRANSIENT" : "ACCESS_DENIED",
        `${configured} set, but no credentials could be loaded with ${configured.includes(" and ") ? "them" : "it"} (${chain.reason})`,
        {
          hint: transient
            ? "the credentials' service (STS) could not be reached: check that it is reachable from here, through HTTPS_PROXY where egress needs a proxy (not listed in NO_PROXY), trusting AWS_CA_BUNDLE where the proxy inspects TLS; then run again"
            : "check that the role can be assumed with this token (its trust policy, the token's audience and expiry), and the proxy's credentials if it asked for them",
        },
      );
    }
    // Public buckets are read anonymously: requests go out unsigned (aws-sdk-js-v3 #2321).
    return make("anonymous", async () => undefined);
  }

  /**
   * The SDK's chain, one for the pool: its provider keeps what it got until it expires, so the
   * probe's credentials are the ones signed with (two chains made two STS calls per run).
   */
  private chain(): Promise<() => Promise<ExpiringCredentials>> {
    this.chainProvider ??= loadChain().then(({ fromNodeProviderChain }) =>
      fromNodeProviderChain(chainInit()),
    );
    return this.chainProvider;
  }

  /** Whether the standard AWS chain (env, profile, web identity, IMDS) yields credentials. */
  private chainCredentials(): Promise<ChainProbe> {
    this.chainProbe ??= this.chain().then((provider) =>
      provider().then(
        (): ChainProbe => ({ found: true }),
        (error: unknown): ChainProbe => ({
          found: false,
          error,
          reason: error instanceof Error ? error.message : String(error),
        }),
      ),
    );
    return this.chainProbe;
  }
}

/**
 * The chain's first link, without loading the chain: keys in AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), as the SDK's fromEnv reads them, unless
 * AWS_PROFILE is set (the SDK's chain then skips the environment's keys for the profile).
 * Why: loading the SDK's chain (@aws-sdk/credential-providers, @smithy/core) was ~30 ms of
 * the ~130 ms a fetch spends before its first request.
 */
export function environmentCredentials(env: NodeJS.ProcessEnv): Credentials | undefined {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (env.AWS_PROFILE || !accessKeyId || !secretAccessKey) return undefined;
  const sessionToken = env.AWS_SESSION_TOKEN;
  return sessionToken
    ? { accessKeyId, secretAccessKey, sessionToken }
    : { accessKeyId, secretAccessKey };
}

type ChainProbe =
  | { readonly found: true }
  | { readonly found: false; readonly reason: string; readonly error: unknown };

const NETWORK_CODES: ReadonlySet<string> = new Set([
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** Whether the chain failed to reach its service (vs. was refused by it). */
export function chainFailureIsTransient(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const e = error as {
    code?: unknown;
    name?: unknown;
    retryable?: unknown;
    $metadata?: { httpStatusCode?: number };
  };
  if (e.code === "EPROXY") return e.retryable === true;
  if (typeof e.code === "string" && NETWORK_CODES.has(e.code)) return true;
  const status = e.$metadata?.httpStatusCode;
  if (typeof status === "number" && status >= 500) return true;
  return (
    e.name === "Throttling" ||
    e.name === "ThrottlingException" ||
    e.name === "IDPCommunicationError" ||
    e.name === "TimeoutError"
  );
}

/**
 * One of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY without the other (and no AWS_PROFILE):
 * what is wrong, as the AWS CLI says it ("Partial credentials found in env"). It went
 * anonymous without a word (review, 2026-12-05).
 */
export function partialEnvironmentKeys(env: NodeJS.ProcessEnv): string | undefined {
  if (env.AWS_PROFILE) return undefined;
  const id = Boolean(env.AWS_ACCESS_KEY_ID);
  const secret = Boolean(env.AWS_SECRET_ACCESS_KEY);
  if (id === secret) return undefined;
  return id
    ? "AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY"
    : "AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID";
}

/**
 * A client that could not be set up, for whichever dataset asks for it: the pool caches it
 * with the client, shared by datasets, so it names none; clientFor makes each dataset's error.
 */
class ClientSetupFailure extends Error {
  readonly code: ErrorCode;
  readonly hint: string;

  constructor(code: ErrorCode, problem: string, options: { hint: string }) {
    super(problem);
    this.code = code;
    this.hint = options.hint;
  }

  forDataset(dataset: string): DsfetchError {
    return new DsfetchError(this.code, `${dataset}: ${this.message}`, {
      dataset,
      hint: this.hint,
    });
  }
}

function brokenCredentialSetup(problem: string): ClientSetupFailure {
  return new ClientSetupFailure("USAGE", problem, {
    hint: "fix the credentials in the environment (set both keys, or a profile that exists), or unset them to read a public bucket anonymously",
  });
}

/**
 * The chain's own requests (STS, SSO) go through the proxy and trust the CA bundle the store's
 * requests do (proxy-agent.ts).
 */
function chainInit(): { clientConfig?: { requestHandler: { httpsAgent: unknown } } } {
  const handler = credentialChainHandler(process.env, caBundle(process.env));
  return handler === undefined ? {} : { clientConfig: { requestHandler: handler } };
}

/**
 * The chain's link the environment asks for by name, for a message when it yields nothing:
 * web identity (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN) or container credentials.
 */
export function configuredChainSource(env: NodeJS.ProcessEnv): string | undefined {
  if (env.AWS_WEB_IDENTITY_TOKEN_FILE && env.AWS_ROLE_ARN) {
    return "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are";
  }
  if (env.AWS_CONTAINER_CREDENTIALS_FULL_URI) return "AWS_CONTAINER_CREDENTIALS_FULL_URI is";
  if (env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) {
    return "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is";
  }
  return undefined;
}

/** The SDK's standard chain, loaded the first time a dataset needs it. */
function loadChain(): Promise<typeof import("@aws-sdk/credential-providers")> {
  return import("@aws-sdk/credential-providers");
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
