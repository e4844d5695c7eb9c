/**
 * Endpoint, region and addressing style of a dataset's store. The dataset's own fields win;
 * then the standard AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and AWS_REGION /
 * AWS_DEFAULT_REGION variables. Pure: the environment is passed in.
 */
import { isIP } from "node:net";
import type { DsfetchError } from "../errors.ts";
import { scrubUserInfo } from "./s3-uri.ts";
import type { EndpointOptions } from "./types.ts";

export interface EndpointFields {
  endpoint: string | undefined;
  region: string | undefined;
  pathStyle: boolean | undefined;
  requesterPays?: boolean | undefined;
}

type Fail = (field: string, problem: string, accepted?: string) => DsfetchError;

const ENDPOINT_FORMS =
  "an http:// or https:// URL with a host and an optional port, e.g. https://minio.example.com:9000";
const REGION_FORMS = 'a region name such as "us-east-1" (letters, digits and "-")';
const REGION_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const DEFAULT_REGION = "us-east-1";

export function resolveEndpoint(
  fields: EndpointFields,
  env: Readonly<Record<string, string | undefined>>,
  fail: Fail,
): EndpointOptions {
  const fromEnv = nonEmpty(env.AWS_ENDPOINT_URL_S3)
    ? { text: env.AWS_ENDPOINT_URL_S3 as string, source: "AWS_ENDPOINT_URL_S3" }
    : nonEmpty(env.AWS_ENDPOINT_URL)
      ? { text: env.AWS_ENDPOINT_URL as string, source: "AWS_ENDPOINT_URL" }
      : undefined;
  const chosen =
    fields.endpoint !== undefined ? { text: fields.endpoint, source: "endpoint" } : fromEnv;
  const url = chosen === undefined ? undefined : checkEndpoint(chosen.text, chosen.source, fail);

  const regionSource =
    fields.region !== undefined
      ? "region"
      : nonEmpty(env.AWS_REGION)
        ? "AWS_REGION"
        : nonEmpty(env.AWS_DEFAULT_REGION)
          ? "AWS_DEFAULT_REGION"
          : undefined;
  const regionText =
    regionSource === undefined
      ? undefined
      : regionSource === "region"
        ? fields.region
        : env[regionSource]?.trim();
  if (regionText !== undefined && !REGION_PATTERN.test(regionText)) {
    throw fail(
      regionSource ?? "region",
      `${JSON.stringify(regionText)} is not a region name`,
      REGION_FORMS,
    );
  }
  const region = regionText ?? DEFAULT_REGION;

  if (fields.pathStyle === false && url !== undefined) {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
    // Virtual-host addressing puts the bucket in the host name: <bucket>.<IP> names nothing,
    // and the store answered with an error about its listing (S3_ERROR: review, 2026-12-05).
    if (isIP(host) !== 0) {
      throw fail(
        "pathStyle",
        `false (virtual-host addressing) needs a DNS name for the endpoint, but ${url} is an IP address`,
        "pathStyle true (or left out: the default for an IP address), or an endpoint with a DNS name",
      );
    }
  }
  const forcePathStyle = fields.pathStyle ?? (url !== undefined && isLocalOrIpHost(url));
  return {
    url,
    region,
    regionDefaulted: regionText === undefined,
    forcePathStyle,
    ...(fields.requesterPays === true ? { requesterPays: true as const } : {}),
  };
}

function checkEndpoint(text: string, source: string, fail: Fail): string {
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw fail(source, `${JSON.stringify(scrubUserInfo(text))} is not a URL`, ENDPOINT_FORMS);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw fail(source, `scheme "${parsed.protocol}" is not http: or https:`, ENDPOINT_FORMS);
  }
  if (parsed.username !== "" || parsed.password !== "") {
    // Never echo the URL here: it carries credentials.
    throw fail(
      source,
      "contains credentials (user:password@); give keys in awsAccessKeyId/awsSecretAccessKey instead",
      ENDPOINT_FORMS,
    );
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    throw fail(
      source,
      `${JSON.stringify(scrubUserInfo(text))} has a query or fragment`,
      ENDPOINT_FORMS,
    );
  }
  // Keep a path prefix if there is one (some gateways serve S3 under a path), no trailing "/".
  const path = parsed.pathname === "/" ? "" : parsed.pathname.replace(/\/+$/, "");
  return `${parsed.protocol}//${parsed.host}${path}`;
}

/** Virtual-host addressing cannot work for IP addresses and localhost: use path style. */
export function isLocalOrIpHost(url: string): boolean {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  return isIP(host) !== 0 || host === "localhost" || host.endsWith(".localhost");
}

function nonEmpty(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== "";
}
