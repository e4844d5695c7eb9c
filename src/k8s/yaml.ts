/**
 * A small YAML emitter for what the Kubernetes renderer produces: plain objects, arrays,
 * strings, finite numbers, booleans and null. Pure. No YAML dependency: the output is a
 * subset that YAML 1.1 (what kubectl's parser speaks) and YAML 1.2 read the same way.
 *
 * - Block style, every level indented by two spaces, lists too (`args:` then `  - fetch`),
 *   which is also how the repository's formatter (biome) lays YAML out, so the checked-in
 *   examples pass `biome check` unchanged.
 * - Strings stay plain only when no YAML reading could take them for anything else: they
 *   start with a letter, `_` or `/` (or dashes then a letter: `--mount`), hold only letters,
 *   digits and `_ . / -`, and are not one of YAML 1.1's booleans or null (`yes`, `on`, `n`,
 *   `null`, …). So `10Gi`, `dsfetch:0.1.0` and `s3://b/k` are quoted; `/readyz` is not.
 * - Multi-line text (the datasets.json of a ConfigMap) is a literal block (`|`, `|-`) when
 *   that can represent it exactly; everything else is a double-quoted JSON string, which is
 *   valid YAML once the characters YAML treats as line breaks or non-printable are escaped.
 */

const PLAIN = /^(?:[A-Za-z_/]|-+[A-Za-z_])[A-Za-z0-9_./-]*$/;
const RESERVED = new Set(["y", "n", "yes", "no", "true", "false", "on", "off", "null"]);
// Non-printable in YAML, or a line break in YAML 1.1 (NEL, LS, PS), or a BOM.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const NEEDS_ESCAPE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\ufeff\ud800-\udfff]/;
const ESCAPE_AFTER_JSON = /[\u007f-\u009f\u2028\u2029\ufeff]/g;

/** One YAML document (no `---`), ending with a newline. */
export function renderYaml(value: unknown): string {
  return `${lines(value, 0).join("\n")}\n`;
}

/**
 * A stream of documents separated by `---`, each optionally preceded by comment lines
 * (`comments` are the comment texts, without `#`).
 */
export function renderYamlDocuments(
  documents: ReadonlyArray<{ readonly value: unknown; readonly comments?: readonly string[] }>,
): string {
  return documents
    .map(({ value, comments = [] }) => {
      const header = comments.map((line) => (line === "" ? "#\n" : `# ${line}\n`)).join("");
      return `${header}${renderYaml(value)}`;
    })
    .join("---\n");
}

/** A string as a YAML scalar on one line (plain or double-quoted). */
export function yamlString(text: string): string {
  if (PLAIN.test(text) && !RESERVED.has(text.toLowerCase())) return text;
  return JSON.stringify(text).replace(
    ESCAPE_AFTER_JSON,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

type Node = string | { block: string; body: string[] };

function scalar(value: unknown): Node | undefined {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`cannot write ${value} in YAML`);
    return String(value);
  }
  if (typeof value === "bigint") return String(value);
  if (typeof value === "string") return literalBlock(value) ?? yamlString(value);
  if (Array.isArray(value)) return value.length === 0 ? "[]" : undefined;
  if (typeof value === "object") return entries(value).length === 0 ? "{}" : undefined;
  throw new TypeError(`cannot write a ${typeof value} in YAML`);
}

/** A literal block for multi-line text, when it represents the text exactly. */
function literalBlock(text: string): Node | undefined {
  if (!text.includes("\n") || NEEDS_ESCAPE.test(text) || /[\r\t]/.test(text)) return undefined;
  const withoutFinal = text.endsWith("\n") ? text.slice(0, -1) : text;
  // More than one final newline needs "keep" chomping; leading spaces need an indentation
  // indicator; whitespace-only lines are ambiguous: quote those rare strings instead.
  if (withoutFinal.endsWith("\n") || withoutFinal.startsWith(" ")) return undefined;
  const body = withoutFinal.split("\n");
  if (body.some((line) => line !== "" && line.trim() === "")) return undefined;
  return { block: text.endsWith("\n") ? "|" : "|-", body };
}

function entries(value: object): Array<[string, unknown]> {
  return Object.entries(value).filter(([, item]) => item !== undefined);
}

function lines(value: unknown, indent: number): string[] {
  const pad = " ".repeat(indent);
  const simple = scalar(value);
  if (simple !== undefined) {
    if (typeof simple === "string") return [`${pad}${simple}`];
    return [`${pad}${simple.block}`, ...blockBody(simple.body, indent + 2)];
  }
  const out: string[] = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      const itemScalar = scalar(item);
      if (typeof itemScalar === "string") {
        out.push(`${pad}- ${itemScalar}`);
      } else if (itemScalar !== undefined) {
        out.push(`${pad}- ${itemScalar.block}`, ...blockBody(itemScalar.body, indent + 2));
      } else {
        // A nested collection: its first line shares the "- " line.
        const nested = lines(item, indent + 2);
        out.push(`${pad}- ${(nested[0] ?? "").slice(indent + 2)}`, ...nested.slice(1));
      }
    }
    return out;
  }
  for (const [key, item] of entries(value as object)) {
    const name = yamlString(key);
    const itemScalar = scalar(item);
    if (typeof itemScalar === "string") {
      out.push(`${pad}${name}: ${itemScalar}`);
    } else if (itemScalar !== undefined) {
      out.push(`${pad}${name}: ${itemScalar.block}`, ...blockBody(itemScalar.body, indent + 2));
    } else {
      out.push(`${pad}${name}:`, ...lines(item, indent + 2));
    }
  }
  return out;
}

function blockBody(body: readonly string[], indent: number): string[] {
  const pad = " ".repeat(indent);
  return body.map((line) => (line === "" ? "" : `${pad}${line}`));
}
