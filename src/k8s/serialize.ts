/**
 * DatasetSpec → the datasets-array entry that parses back to it, for the ConfigMap the pods
 * read. Pure.
 *
 * Works from the parsed form, not the user's text, so what the pods fetch is exactly what
 * `dsfetch plan` showed here: the canonical URI, the name (always written, so a later
 * change to name derivation cannot move the data), the ETag without quotes, the versionId,
 * the volume size as given, and the store *as resolved here*: the endpoint and region are
 * written (they may have come from AWS_ENDPOINT_URL / AWS_REGION in this environment, and
 * the pods' environment must not silently change them), except a region nothing gave here
 * (the us-east-1 default), which would override the pods' own AWS_REGION (from
 * --aws-secret, IRSA) with a guess (review, 2026-12-05); `pathStyle` only when it differs
 * from what that endpoint implies.
 *
 * Credentials are never written: a dataset carrying keys is refused (see rejectCredentials).
 */
import { isLocalOrIpHost } from "../config/endpoint.ts";
import type { DatasetSpec } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";

/** One entry of the datasets array, as written to the ConfigMap. */
export interface DatasetEntryJson {
  uri: string;
  name: string;
  etag?: string;
  versionId?: string;
  volumeOptions?: { kind: "dynamic"; size: string };
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  requesterPays?: boolean;
}

export function serializeDataset(spec: DatasetSpec): DatasetEntryJson {
  if (spec.credentials !== undefined) throw credentialsError([spec]);
  const entry: DatasetEntryJson = { uri: spec.uri, name: spec.name };
  if (spec.endpoint.regionDefaulted !== true) entry.region = spec.endpoint.region;
  if (spec.etag !== undefined) entry.etag = spec.etag;
  if (spec.versionId !== undefined) entry.versionId = spec.versionId;
  if (spec.volume.kind === "ephemeral") {
    entry.volumeOptions = { kind: "dynamic", size: spec.volume.sizeText };
  }
  const { url, forcePathStyle } = spec.endpoint;
  if (url !== undefined) entry.endpoint = url;
  const impliedPathStyle = url !== undefined && isLocalOrIpHost(url);
  if (forcePathStyle !== impliedPathStyle) entry.pathStyle = forcePathStyle;
  if (spec.endpoint.requesterPays === true) entry.requesterPays = true;
  // Field order as in the README's table, whatever order the optional fields were set in.
  const { uri, name, etag, versionId, volumeOptions, endpoint, region, pathStyle, requesterPays } =
    entry;
  return dropUndefined({
    uri,
    name,
    etag,
    versionId,
    volumeOptions,
    endpoint,
    region,
    pathStyle,
    requesterPays,
  });
}

/** The datasets array as JSON text (2-space indented, final newline). */
export function serializeDatasets(specs: readonly DatasetSpec[]): string {
  rejectCredentials(specs);
  return `${JSON.stringify(specs.map(serializeDataset), null, 2)}\n`;
}

/**
 * Refuses datasets with per-dataset keys: a ConfigMap is readable by anyone who can read the
 * namespace's config, and rendered YAML ends up in repositories. Keys belong in a Secret.
 */
export function rejectCredentials(specs: readonly DatasetSpec[]): void {
  const carrying = specs.filter((spec) => spec.credentials !== undefined);
  if (carrying.length > 0) throw credentialsError(carrying);
}

function credentialsError(carrying: readonly DatasetSpec[]): DsfetchError {
  const which = carrying.map((spec) => `datasets[${spec.index}] ("${spec.name}")`).join(", ");
  const one = carrying.length === 1;
  return new DsfetchError(
    "USAGE",
    `${which} ${one ? "carries" : "carry"} awsAccessKeyId/awsSecretAccessKey: credentials are never rendered into Kubernetes objects (the ConfigMap would hand them to anyone who can read it)`,
    {
      dataset: one ? carrying[0]?.name : undefined,
      hint: "remove the keys from the datasets array, store them in a Secret (kubectl create secret generic dsfetch-aws --from-literal=AWS_ACCESS_KEY_ID=… --from-literal=AWS_SECRET_ACCESS_KEY=…) and pass --aws-secret dsfetch-aws: the dsfetch container then gets them as the standard AWS variables, which the default credential chain reads (one set of keys for every dataset of the job)",
    },
  );
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as T;
}
