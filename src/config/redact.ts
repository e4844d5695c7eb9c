/**
 * Secrets never appear in any log line, error message, manifest or JSON output (SPEC §1).
 * Messages are built without them; this is the last line of defence for text that comes
 * from elsewhere (SDK messages, stack traces) before it is printed.
 */
import type { DatasetSpec } from "./types.ts";

const SECRET_ENV = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];
export const REDACTED = "[REDACTED]";
/**
 * An access key ID is an identifier, not a secret (every signed request carries it in the
 * clear), and on MinIO or Ceph it is a user name that often is an ordinary word: a key ID
 * "vision" turned the team, claim and paths named "vision" into [REDACTED] in every output
 * (`k8s` printed invalid YAML, `--json` wrong paths: review, 2026-12-05). Key IDs this long
 * (AWS's are 20 characters, AKIA…/ASIA…) are still hidden; shorter ones are left alone.
 */
const MIN_REDACTED_KEY_ID = 16;
/** Shorter "secrets" are ordinary words (add). */
const MIN_REDACTED_SECRET = 8;

export class Redactor {
  private readonly secrets = new Set<string>();

  addDatasets(datasets: readonly DatasetSpec[]): this {
    for (const spec of datasets) {
      const credentials = spec.credentials;
      if (credentials === undefined) continue;
      this.addKeyId(credentials.accessKeyId);
      this.add(credentials.secretAccessKey);
      this.add(credentials.sessionToken);
    }
    return this;
  }

  addEnv(env: Readonly<Record<string, string | undefined>>): this {
    for (const name of SECRET_ENV) this.add(env[name]);
    this.addKeyId(env.AWS_ACCESS_KEY_ID);
    return this;
  }

  private addKeyId(keyId: string | undefined): void {
    if (keyId !== undefined && keyId.length >= MIN_REDACTED_KEY_ID) this.add(keyId);
  }

  add(secret: string | undefined): void {
    // Short values redact ordinary words: a secret "data" made `--json` print
    // "[REDACTED]sets" and every path's "/data/" (review, 2026-12-05). No real secret is
    // this short (AWS's are 40 characters; MinIO refuses fewer than 8), and secrets are
    // never put in messages in the first place: this is the last line of defence.
    if (secret !== undefined && secret.length >= MIN_REDACTED_SECRET) this.secrets.add(secret);
  }

  redact(text: string): string {
    let out = text;
    // Longest first: a secret that contains another (key "admin", secret "adminpass") goes whole.
    const secrets = [...this.secrets].sort((a, b) => b.length - a.length);
    for (const secret of secrets) out = out.split(secret).join(REDACTED);
    return out;
  }
}
