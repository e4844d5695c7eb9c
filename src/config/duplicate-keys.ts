/**
 * The first key given twice in one object of a JSON5 text, or undefined. Pure.
 *
 * Why: JSON.parse and JSON5.parse keep the last of two equal keys, so an entry with "uri"
 * twice staged the second URI without a word (review, 2026-12-05): the silent kind of
 * misconfiguration SPEC §1 asks to fail loudly. Called only on text that parsed, so the
 * scanner may assume valid JSON5.
 *
 * Linear in the text: every character is looked at a bounded number of times. Until
 * 2026-12-07 the line count searched for the next "\n" from every token to wherever it was,
 * the end of the text on one-line JSON (what JSON.stringify and json.dump write): a 4 MB
 * one-line array took 54 s, the allowed 16 MiB would have taken a quarter of an hour.
 */
import JSON5 from "json5";

export interface DuplicateKey {
  readonly key: string;
  /** 1-based line of the second occurrence. */
  readonly line: number;
}

type Frame =
  | { readonly kind: "object"; readonly keys: Set<string>; expectKey: boolean }
  | {
      readonly kind: "array";
    };

const PUNCTUATION = new Set(["{", "}", "[", "]", ":", ","]);

export function firstDuplicateKey(text: string): DuplicateKey | undefined {
  const stack: Frame[] = [];
  let i = 0;
  let line = 1;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === "\n") {
      line += 1;
      i += 1;
      continue;
    }
    if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i += 1;
      continue;
    }
    if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end === -1 ? text.length : end + 2;
      line += countNewlines(text, i, stop);
      i = stop;
      continue;
    }
    const top = stack[stack.length - 1];
    if (PUNCTUATION.has(c)) {
      if (c === "{") stack.push({ kind: "object", keys: new Set(), expectKey: true });
      else if (c === "[") stack.push({ kind: "array" });
      else if (c === "}" || c === "]") stack.pop();
      else if (c === "," && top?.kind === "object") top.expectKey = true;
      else if (c === ":" && top?.kind === "object") top.expectKey = false;
      i += 1;
      continue;
    }
    // A token: a string, or a run of other characters (an identifier, a number, a literal).
    let end: number;
    if (c === '"' || c === "'") {
      end = i + 1;
      while (end < text.length && text[end] !== c) end += text[end] === "\\" ? 2 : 1;
      end += 1;
    } else {
      end = i;
      while (end < text.length && !/[\s{}[\]:,/"']/.test(text[end] as string)) end += 1;
      if (end === i) {
        i += 1;
        continue;
      }
    }
    if (top?.kind === "object" && top.expectKey) {
      const key = keyOf(text.slice(i, end));
      if (key !== undefined) {
        if (top.keys.has(key)) return { key, line };
        top.keys.add(key);
      }
      top.expectKey = false;
    }
    line += countNewlines(text, i, end);
    i = end;
  }
  return undefined;
}

/** The key a token names: a string's value, or an identifier (escapes decoded by JSON5). */
function keyOf(token: string): string | undefined {
  // Most keys have no escapes: read as they are (a config of 16 MiB has many keys).
  if (!token.includes("\\")) {
    const quote = token[0];
    return quote === '"' || quote === "'" ? token.slice(1, -1) : token;
  }
  try {
    const parsed: unknown = JSON5.parse(`{${token}:0}`);
    return Object.keys(parsed as object)[0];
  } catch {
    return undefined;
  }
}

/**
 * The "\n"s in text[from, to). Looks at no character outside the range: the ranges of one
 * scan do not overlap, so the scan stays linear however few lines the text has.
 */
function countNewlines(text: string, from: number, to: number): number {
  let count = 0;
  for (let at = from; at < to; at++) {
    if (text.charCodeAt(at) === 10) count += 1;
  }
  return count;
}
