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
