/**
 * node:tls and node:https, loaded when first used instead of at start-up. An ES import of
 * node:tls costs every dsfetch process its TLS stack at start (~25 ms of CPU on these
 * machines beyond node:crypto, node:https ~10 ms more: 30 starts each of a module importing
 * only that, 2026-12-07: 83 ms bare, 118 with node:crypto, 145 with node:tls, 155 with
 * node:https), and `list`, `prune`, `k8s` and every run against an http:// endpoint never
 * use it (a cached dataset's check still asks an https:// store). The CommonJS modules, required, are the same objects.
 */
import { createRequire } from "node:module";

const requireBuiltin = createRequire(import.meta.url);

let tls: typeof import("node:tls") | undefined;
let https: typeof import("node:https") | undefined;

export function tlsModule(): typeof import("node:tls") {
  tls ??= requireBuiltin("node:tls") as typeof import("node:tls");
  return tls;
}

export function httpsModule(): typeof import("node:https") {
  https ??= requireBuiltin("node:https") as typeof import("node:https");
  return https;
}

/** The certificates of a CA bundle (AWS_CA_BUNDLE), as Node reads them: for messages. */
export interface CaBundleContents {
  /** Subjects of the PEM certificates it holds, in order (none: no certificate Node uses). */
  readonly subjects: readonly string[];
  /** Without PEM certificates: the subject of the one DER (binary) certificate it is. */
  readonly derSubject?: string | undefined;
}

const bundles = new Map<string, CaBundleContents | undefined>();

/**
 * What the CA bundle file at `path` holds; undefined when it cannot be read. Read once per
 * path and process: asked for when a certificate is not trusted, to say why (an error for
 * every request of a folder). Node takes the PEM certificates of the text it is given and
 * ignores the rest without a word (a DER file, a file of something else), which read as "not
 * trusted … give the certificate authority in AWS_CA_BUNDLE" (exploratory review, 2026-12-07).
 */
export function caBundleContents(path: string): CaBundleContents | undefined {
  if (bundles.has(path)) return bundles.get(path);
  let contents: CaBundleContents | undefined;
  try {
    const bytes = requireBuiltin("node:fs").readFileSync(path) as Buffer;
    const { X509Certificate } = requireBuiltin("node:crypto") as typeof import("node:crypto");
    const subjectOf = (data: string | Buffer): string | undefined => {
      try {
        return new X509Certificate(data).subject.replaceAll("\n", ", ");
      } catch {
        return undefined;
      }
    };
    const blocks =
      bytes
        .toString("latin1")
        .match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    const subjects = blocks.flatMap((block) => subjectOf(block) ?? []);
    const derSubject = subjects.length === 0 ? subjectOf(bytes) : undefined;
    contents = { subjects, ...(derSubject === undefined ? {} : { derSubject }) };
  } catch {
    contents = undefined;
  }
  bundles.set(path, contents);
  return contents;
}
