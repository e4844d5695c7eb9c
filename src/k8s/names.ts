/** Kubernetes object names, checked before they are rendered (a typo fails here, not at apply). Pure. */
import { DsfetchError } from "../errors.ts";

const LABEL = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
const DNS_SUBDOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

export const SUBDOMAIN_FORMS =
  'lowercase letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters';

/** A DNS-1123 subdomain: the names of ConfigMaps, Secrets, PersistentVolumeClaims, StorageClasses. */
export function isDnsSubdomain(name: string): boolean {
  return name.length <= 253 && DNS_SUBDOMAIN.test(name);
}

/** Throws a USAGE error naming the flag when `name` is not a valid object name. */
export function checkObjectName(name: string, flag: string, what: string): string {
  if (!isDnsSubdomain(name)) {
    throw new DsfetchError(
      "USAGE",
      `${flag}: ${JSON.stringify(name)} is not a valid ${what} name`,
      { expected: SUBDOMAIN_FORMS, hint: `a ${what} name is ${SUBDOMAIN_FORMS}` },
    );
  }
  return name;
}
