/**
 * Secrets never appear in any log line, error message, manifest or JSON output (SPEC §1).
 * Messages are built without them; this is the last line of defence for text that comes
 * from elsewhere (SDK messages, stack traces) before it is printed.
 */
import type { DatasetSpec } from "./types.ts";

const SECRET_ENV = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"];
export const REDACTED = "[REDACTED]";

export class Redactor {
  private readonly secrets = new Set<string>();

  addDatasets(datasets: readonly DatasetSpec[]): this {
    for (const spec of datasets) {
      const credentials = spec.credentials;
      if (credentials === undefined) continue;
      this.add(credentials.accessKeyId);
      this.add(credentials.secretAccessKey);
      this.add(credentials.sessionToken);
    }
    return this;
  }

  addEnv(env: Readonly<Record<string, string | undefined>>): this {
    for (const name of SECRET_ENV) this.add(env[name]);
    return this;
  }

  add(secret: string | undefined): void {
    // Very short values would redact ordinary words; no real key is this short.
    if (secret !== undefined && secret.length >= 4) this.secrets.add(secret);
  }

  redact(text: string): string {
    let out = text;
    // Longest first: a secret that contains another (key "admin", secret "adminpass") goes whole.
    const secrets = [...this.secrets].sort((a, b) => b.length - a.length);
    for (const secret of secrets) out = out.split(secret).join(REDACTED);
    return out;
  }
}
