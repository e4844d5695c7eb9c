/**
 * A bucket in another region than the one the requests were signed for. AWS answers 301
 * PermanentRedirect (or 400 AuthorizationHeaderMalformed) and names the bucket's region in
 * `x-amz-bucket-region` (or the error's <Region>); the AWS CLI, s5cmd and the SDK follow it.
 * dsfetch failed with "the store refused the request; check the URI, endpoint and region"
 * whenever AWS_REGION was unset and the bucket was not in us-east-1. Now the dataset's
 * resolution (its first request) is tried again once with a client for the region named,
 * and the run says so.
 */
import type { DatasetSpec } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";
import type { ClientPool, StoreClient } from "./client.ts";
import { type Resolution, resolveDataset } from "./resolve.ts";
import type { RetryOptions } from "./retry.ts";

/** What a region name looks like (it goes into a host name). */
const REGION = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * The region an error says the bucket is in, when it is another than `region`: a redirect
 * (301, 307) or a refused signature (400) that names one.
 */
export function regionNamedBy(error: unknown, region: string): string | undefined {
  const cause = error instanceof DsfetchError ? error.cause : error;
  if (typeof cause !== "object" || cause === null) return undefined;
  const shaped = cause as {
    $metadata?: { httpStatusCode?: number };
    $response?: { headers?: Record<string, string | undefined> };
  };
  const status = shaped.$metadata?.httpStatusCode;
  if (status !== 301 && status !== 307 && status !== 400) return undefined;
  const named = shaped.$response?.headers?.["x-amz-bucket-region"]?.trim();
  if (named === undefined || !REGION.test(named) || named === region) return undefined;
  return named;
}

export interface RegionResolution {
  readonly resolution: Resolution;
  /** The client the dataset's later requests use (for the bucket's own region). */
  readonly client: StoreClient;
}

/**
 * Resolves the dataset; if the store names another region for its bucket, once more with a
 * client for that region (`onRedirect` tells the caller, for a warning).
 */
export async function resolveInBucketRegion(
  spec: DatasetSpec,
  client: StoreClient,
  pool: ClientPool,
  retry: RetryOptions,
  onRedirect: (region: string) => void,
): Promise<RegionResolution> {
  try {
    return { resolution: await resolveDataset(spec, client, retry), client };
  } catch (error) {
    // Once: the client for the region named is not moved on if refused in turn. Another
    // dataset of the bucket may have learned it meanwhile (datasets resolve at once).
    const region = regionNamedBy(error, client.region);
    if (region === undefined) throw error;
    if (pool.regionLearned(spec) !== region) {
      onRedirect(region);
      pool.learnRegion(spec, region);
    }
    const moved = await pool.clientFor(spec);
    return { resolution: await resolveDataset(spec, moved, retry), client: moved };
  }
}
