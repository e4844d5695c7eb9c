/** The validated, frozen shapes that parsing produces. */
import type { ArchiveFormat } from "../archive/formats.ts";
import type { S3Location } from "./s3-uri.ts";

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
}

export interface EndpointOptions {
  /** Endpoint URL of an S3-compatible store; undefined for AWS. */
  readonly url: string | undefined;
  readonly region: string;
  /** No "region" field nor AWS_REGION / AWS_DEFAULT_REGION gave it: DEFAULT_REGION. */
  readonly regionDefaulted?: boolean | undefined;
  readonly forcePathStyle: boolean;
  /**
   * The bucket is Requester Pays: every request says `x-amz-request-payer: requester` (the
   * requester's account pays the transfer); without it such a bucket answers 403. Set only
   * when true.
   */
  readonly requesterPays?: true | undefined;
}

export type VolumeSpec =
  | { readonly kind: "shared" }
  | { readonly kind: "ephemeral"; readonly sizeBytes: number; readonly sizeText: string };

export interface DatasetSpec {
  /** Position in the datasets array, for messages. */
  readonly index: number;
  readonly name: string;
  /** Canonical `s3://bucket/key` text (no secrets ever live in it). */
  readonly uri: string;
  readonly location: S3Location;
  /** Expected ETag, lowercase without quotes. */
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
  /** Archive format from the key's extension; expanded when the URI resolves to an object. */
  readonly archive: ArchiveFormat | undefined;
  readonly volume: VolumeSpec;
  /** Per-dataset credentials; undefined means the default AWS chain, then anonymous. */
  readonly credentials: Credentials | undefined;
  readonly endpoint: EndpointOptions;
}

export interface Settings {
  readonly storageRoot: string | undefined;
  readonly team: string | undefined;
  readonly mountRoot: string;
  readonly ephemeralRoot: string;
  /**
   * The ephemeral root is the default one (no --ephemeral-root, no DSFETCH_EPHEMERAL_ROOT):
   * made and checked to be this user's own (volumes/ephemeral-root.ts).
   */
  readonly ephemeralRootIsDefault?: boolean | undefined;
  /**
   * false (`--no-fallback`, DSFETCH_FALLBACK=0): a shared dataset that shared storage cannot
   * take fails (STORAGE, exit 7) instead of going to an ephemeral volume. Default true.
   */
  readonly fallback?: boolean | undefined;
}

/** The default size of an ephemeral volume (SPEC §1). */
export const DEFAULT_VOLUME_SIZE = "5Gi";
