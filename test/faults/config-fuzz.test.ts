// Fault suite, scenario 6: a fuzzer over the datasets array (SPEC §1, §8; README "Every bad
// input is an error (exit 2)… Secrets… never appear in any message"). Seeded: the seed is
// printed, and DSFETCH_FAULT_SEED replays a run; a failure prints the input that caused it.
// Inputs are datasets arrays built from near-valid entries with fields dropped, retyped,
// duplicated or replaced (wrong types, huge and odd numbers, deep nesting, odd Unicode, long
// strings, misspelt and random field names, `__proto__`/`constructor`/`prototype` keys,
// credentials in URIs), then often broken as text (truncated, characters inserted or removed,
// JSON5 comments and forms, a BOM).
// - In process, RUNS x 2500 inputs (plus fixed edge cases) through parseDatasetsText: either
//   frozen, well-formed specs, or a DsfetchError with exit code 2 and no stack in its text;
//   never another exception, never a secret (a credential field's value, or the password of
//   a `user:password@` in a URI or endpoint) in a message, never more than 5 s, and
//   Object.prototype untouched at the end.
// - Through the real CLI, RUNS x 15 of the rejected inputs (`dsfetch plan` or `fetch`, from
//   standard input, a file or DSFETCH_DATASETS, with or without --json, sometimes with
//   invalid UTF-8; the endpoint is a closed port on 127.0.0.1, so a request would show as
//   exit 6 after retries): the exit code, stderr and stdout are exactly what the library's
//   error renders to (`dsfetch: error: … [CODE]`, a hint line), never exit 1, no signal, no
//   stack trace, no secret.
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderError } from "../../src/cli/render.ts";
import { DATASET_FIELDS } from "../../src/config/dataset.ts";
import { parseDatasetsText } from "../../src/config/datasets-array.ts";
import { type DatasetsSource, loadDatasets } from "../../src/config/load.ts";
import { Redactor } from "../../src/config/redact.ts";
import { DsfetchError } from "../../src/errors.ts";
import { baseEnv } from "../harness/cli.ts";
import {
  cliEnv,
  mapLimit,
  type Rng,
  RUNS,
  removeAll,
  rngFor,
  SEED,
  scratchDir,
  stackLines,
  startCli,
} from "./helpers.ts";
import { type FaultCase, FaultReport } from "./report.ts";

const rng = rngFor("config-fuzz");
const report = new FaultReport("config-fuzz");

const IN_PROCESS_PER_RUN = 2500;
const CLI_PER_RUN = 15;
/** A message longer than this is counted (echoing a megabyte of input back is not helpful). */
const LONG_MESSAGE = 2048;
const PARSE_BOUND_MS = 5000;

let scratch: string;
let closedEndpoint: string;

beforeAll(async () => {
  scratch = await scratchDir("config-fuzz");
  // A port nothing listens on: any request dsfetch made would be refused (and retried).
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  closedEndpoint = `http://127.0.0.1:${address.port}`;
  console.log(`config-fuzz: seed ${SEED} (DSFETCH_FAULT_SEED=${SEED} replays it)`);
});

afterAll(async () => {
  await removeAll(scratch);
});

// ---------------------------------------------------------------------------------------------
// Generated values. Objects are key/value pairs (so keys can repeat and be "__proto__"), and
// raw tokens stand for JSON5-only or odd number forms; toText writes them as JSON(5) text.

class Obj {
  readonly pairs: [string, Value][];
  constructor(pairs: [string, Value][]) {
    this.pairs = pairs;
  }
}
class Raw {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}
type Value = null | boolean | number | string | Value[] | Obj | Raw;

/** Every generated secret contains this: any message that does shows one. */
const SECRET_MARK = "fuzzSeKrEt";
const secret = (r: Rng) => `${SECRET_MARK}${r.int(0, 1e9).toString(36)}x`;

// The fuzzer covers exactly the fields the parser knows.
const FIELDS = DATASET_FIELDS;
const SECRET_FIELDS = new Set(["awsAccessKeyId", "awsSecretAccessKey", "awsSessionToken"]);
const DANGEROUS_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
  "__lookupGetter__",
  "isPrototypeOf",
  "then",
  "length",
  "0",
];
const ODD = [
  "\u202e",
  "\u200b",
  "e\u0301",
  "\ud83d\ude00",
  "\ud800",
  "\udfff",
  "\u0000",
  "\u0007",
  "\u001b[31m",
  "\u2028",
  "\u2029",
  "\ufeff",
  "\uffff",
  "\ufffd",
  "\u00a0",
  "\u212a",
  "\u0130",
  "\u00df",
  "\ufb01",
  "\uff33\uff13\uff1a\uff0f\uff0f",
  "\u0456",
  "\\",
  "/",
  "..",
  ".",
  "-",
  "%2e%2e",
  "CON",
  "nul",
  "'",
  '"',
  "\u0024{HOME}",
  "$(id)",
  "\n",
  "\t",
  " ",
];

function oddString(r: Rng): string {
  const n = r.int(1, 6);
  let out = "";
  for (let i = 0; i < n; i++) {
    out += r.bool(0.5) ? r.pick(ODD) : r.pick(["a", "b", "0", "_", "s3://", "x.tar.gz", "@", ":"]);
  }
  return out;
}

function longString(r: Rng): string {
  const unit = r.pick(["a", "9", "a/", "\u00e9", "\ud83d\ude00", "..", " ", "-", "ab."]);
  const length = r.bool(0.05) ? r.int(10_000, 200_000) : r.int(100, 3000);
  return unit.repeat(Math.ceil(length / unit.length));
}

function randomNumber(r: Rng): Value {
  return r.pick<Value>([
    0,
    -0,
    -1,
    1,
    0.5,
    1e308,
    -1e308,
    5e-324,
    2 ** 53,
    2 ** 53 + 2,
    2 ** 63,
    1073741824,
    r.int(-1e6, 1e6),
    r.float(-1e9, 1e9),
    new Raw("1e400"),
    new Raw("-1e400"),
    new Raw("Infinity"),
    new Raw("-Infinity"),
    new Raw("NaN"),
    new Raw("0x10"),
    new Raw(".5"),
    new Raw("+1"),
    new Raw("9007199254740993"),
    new Raw("1_000"),
    new Raw("0777"),
    new Raw(`1${"0".repeat(400)}`),
  ]);
}

function randomValue(r: Rng, depth: number): Value {
  const roll = r.int(0, 11);
  if (depth > 4 && roll > 7) return null;
  switch (roll) {
    case 0:
      return null;
    case 1:
      return r.bool();
    case 2:
    case 3:
      return randomNumber(r);
    case 4:
      return oddString(r);
    case 5:
      return longString(r);
    case 6:
      return r.pick(["", " ", "s3://b/k", "dynamic", "10Gi", "true", "null", "[]", "{}"]);
    case 7:
      return deep(r);
    case 8:
    case 9:
      return Array.from({ length: r.int(0, 4) }, () => randomValue(r, depth + 1));
    default:
      return new Obj(
        Array.from({ length: r.int(0, 4) }, () => [randomKey(r), randomValue(r, depth + 1)]),
      );
  }
}

/** A deeply nested array or object (up to a few thousand levels), as text. */
function deep(r: Rng): Value {
  const levels = r.bool(0.2) ? r.int(1000, 5000) : r.int(2, 100);
  let open = "";
  let close = "";
  for (let i = 0; i < levels; i++) {
    if (r.bool()) {
      open += "[";
      close = `]${close}`;
    } else {
      open += `{${JSON.stringify(r.pick(["a", "uri"]))}:`;
      close = `}${close}`;
    }
  }
  return new Raw(`${open}${r.bool() ? '"s3://b/k"' : "null"}${close}`);
}

function misspell(r: Rng, field: string): string {
  const i = r.int(0, Math.max(0, field.length - 1));
  switch (r.int(0, 6)) {
    case 0:
      return field.slice(0, i) + field.slice(i + 1);
    case 1:
      return field.slice(0, i) + field[i] + field.slice(i);
    case 2:
      return field.toUpperCase();
    case 3:
      return `${field} `;
    case 4:
      return field.replace("i", "\u0456");
    case 5:
      return `${field}s`;
    default:
      return field.slice(0, i) + r.pick(["_", "-", "\u0000", "."]) + field.slice(i);
  }
}

function randomKey(r: Rng): string {
  switch (r.int(0, 5)) {
    case 0:
    case 1:
      return r.pick(DANGEROUS_KEYS);
    case 2:
      return misspell(r, r.pick(FIELDS));
    case 3:
      return oddString(r);
    case 4:
      return r.bool(0.2) ? longString(r) : "";
    default:
      return r.pick(FIELDS);
  }
}

function bucketName(r: Rng): string {
  return r.pick(["b", "my-bucket", "data.set", "a1", `b${r.int(0, 99)}`]);
}

/** A URI: usually valid, sometimes broken, sometimes holding `user:password@`. */
function uriValue(r: Rng): string {
  const bucket = bucketName(r);
  const key = r.pick([
    "k",
    "images/",
    "",
    "mnist.zip",
    "d/set.tar.gz",
    "a/b/c.txz",
    "x.TGZ",
    "a//b",
  ]);
  switch (r.int(0, 14)) {
    case 0:
      return `s3://user:${secret(r)}@${bucket}/${key}`;
    case 1:
      return `${r.pick(["s3:/", "s3:///", "s3:", "S3://", "s3:\\\\", "http://", " s3://"])}user:${secret(r)}@${bucket}/${key}`;
    case 2:
      return `${r.pick(["s3://", "S3://", "s3:/", "gs://", "file://", "s3::", ""])}${bucket}/${key}`;
    case 3:
      return `s3://${r.bool() ? oddString(r) : longString(r)}/${key}`;
    case 4:
      return `s3://${bucket}/${r.bool() ? oddString(r) : longString(r)}`;
    default:
      return `s3://${bucket}${key === "" && r.bool() ? "" : `/${key}`}`;
  }
}

function fieldValue(r: Rng, field: (typeof FIELDS)[number]): Value {
  if (r.bool(0.15)) return randomValue(r, 1);
  switch (field) {
    case "uri":
    case "url":
      return uriValue(r);
    case "name":
      return r.pick([
        "mnist",
        "a",
        "x".repeat(160),
        "x".repeat(161),
        ".hidden",
        "-dash",
        "with space",
        "ok_name-1.2+3=4@5,6",
        "a/b",
        "..",
        oddString(r),
      ]);
    case "etag": {
      const hex = Array.from({ length: 32 }, () => r.int(0, 15).toString(16)).join("");
      return r.pick([
        hex,
        `"${hex}"`,
        hex.toUpperCase(),
        `${hex}-3`,
        `${hex}-0`,
        `${hex}-100000`,
        hex.slice(1),
        `W/"${hex}"`,
        ` ${hex} `,
      ]);
    }
    case "versionId":
      return r.pick([
        "null",
        "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
        "",
        " v",
        "v\u0000",
      ]);
    case "volumeOptions": {
      const pairs: [string, Value][] = [];
      if (r.bool(0.9)) pairs.push(["kind", r.bool(0.8) ? "dynamic" : randomValue(r, 2)]);
      if (r.bool(0.8)) {
        pairs.push([
          "size",
          r.pick<Value>([
            "10Gi",
            "1.5T",
            "500M",
            "0",
            "-1Gi",
            "10GB",
            "10 Gi",
            "1e3",
            `${"9".repeat(r.int(20, 2000))}Ti`,
            "0.0000001K",
            randomNumber(r),
          ]),
        ]);
      }
      if (r.bool(0.2)) pairs.push([randomKey(r), randomValue(r, 2)]);
      return new Obj(pairs);
    }
    case "awsAccessKeyId":
    case "awsSecretAccessKey":
    case "awsSessionToken":
      return r.pick<Value>([
        secret(r),
        `${secret(r)}\u0000`,
        ` ${secret(r)}`,
        `${secret(r)}\n`,
        "",
        secret(r).repeat(r.int(1, 300)),
      ]);
    case "endpoint":
      return r.pick([
        "http://127.0.0.1:9000",
        "https://minio.example.com",
        `http://user:${secret(r)}@h:9000`,
        `http:/user:${secret(r)}@h`,
        `http://h:${r.int(0, 99999)}`,
        "ftp://h",
        "http://",
        "http://[::1]:9000",
        "http://h/path?q=1#f",
        oddString(r),
      ]);
    case "region":
      return r.pick(["us-east-1", "", "US-EAST-1", "eu_west", "a".repeat(64), oddString(r)]);
    case "pathStyle":
    case "requesterPays":
      return r.pick<Value>([true, false, "true", 1, null]);
  }
}

function entry(r: Rng): Value {
  if (r.bool(0.05)) return randomValue(r, 1);
  const pairs: [string, Value][] = [];
  const uriField = r.bool(0.85) ? "uri" : "url";
  if (r.bool(0.93)) pairs.push([uriField, fieldValue(r, uriField)]);
  for (const field of FIELDS) {
    if (field === "uri" || field === "url") {
      if (field !== uriField && r.bool(0.05)) pairs.push([field, fieldValue(r, field)]);
      continue;
    }
    if (r.bool(SECRET_FIELDS.has(field) ? 0.12 : 0.18)) pairs.push([field, fieldValue(r, field)]);
  }
  if (r.bool(0.15)) pairs.push([randomKey(r), randomValue(r, 1)]);
  if (r.bool(0.08) && pairs.length > 0) {
    const [key] = r.pick(pairs);
    pairs.push([key, randomValue(r, 1)]);
  }
  // Shuffle.
  for (let i = pairs.length - 1; i > 0; i--) {
    const j = r.int(0, i);
    [pairs[i], pairs[j]] = [pairs[j] as [string, Value], pairs[i] as [string, Value]];
  }
  return new Obj(pairs);
}

function topLevel(r: Rng): Value {
  const list = (): Value[] => {
    const n = r.bool(0.05) ? r.int(0, 40) : r.int(1, 3);
    const items = Array.from({ length: n }, () => entry(r));
    if (r.bool(0.05) && items.length > 0) items.push(r.pick(items));
    return items;
  };
  switch (r.int(0, 9)) {
    case 0:
      return new Obj([["datasets", list()]]);
    case 1:
      return new Obj([
        ["datasets", list()],
        [randomKey(r), randomValue(r, 1)],
      ]);
    case 2:
      return r.bool() ? entry(r) : randomValue(r, 0);
    default:
      return list();
  }
}

function quote(text: string, single: boolean): string {
  const json = JSON.stringify(text);
  if (!single) return json;
  return `'${json.slice(1, -1).replace(/\\"/g, '"').replace(/'/g, "\\'")}'`;
}

/** JSON text; `json5` writes some keys unquoted, some strings single-quoted, trailing commas, comments. */
function toText(v: Value, r: Rng, json5: boolean): string {
  const parts: string[] = [];
  const write = (x: Value): void => {
    if (x instanceof Raw) parts.push(x.text);
    else if (x instanceof Obj) {
      parts.push("{");
      x.pairs.forEach(([key, value], i) => {
        if (i > 0) parts.push(",");
        if (json5 && r.bool(0.1)) parts.push("/* c */");
        parts.push(
          json5 && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) && r.bool(0.3)
            ? key
            : quote(key, json5 && r.bool(0.2)),
        );
        parts.push(":");
        write(value);
      });
      if (json5 && x.pairs.length > 0 && r.bool(0.2)) parts.push(",");
      parts.push("}");
    } else if (Array.isArray(x)) {
      parts.push("[");
      x.forEach((item, i) => {
        if (i > 0) parts.push(",");
        write(item);
      });
      if (json5 && x.length > 0 && r.bool(0.2)) parts.push(",");
      parts.push("]");
    } else if (typeof x === "string") parts.push(quote(x, json5 && r.bool(0.2)));
    else if (typeof x === "number") parts.push(Object.is(x, -0) ? "-0" : JSON.stringify(x));
    else parts.push(JSON.stringify(x));
  };
  write(v);
  let text = parts.join("");
  if (json5 && r.bool(0.2)) text = `// datasets\n${text}\n/* end */`;
  return text;
}

const BREAKERS = [
  "{",
  "}",
  "[",
  "]",
  '"',
  "'",
  ",",
  ":",
  "/",
  "*",
  "\\",
  "\n",
  "\u0000",
  "\ud800",
  "\u2028",
  "0",
  "e",
  " ",
];

/** Breaks the text: truncation, characters inserted, removed or replaced, slices duplicated. */
function breakText(text: string, r: Rng): string {
  let out = text;
  const n = r.int(1, 3);
  for (let i = 0; i < n; i++) {
    const at = r.int(0, out.length);
    switch (r.int(0, 5)) {
      case 0:
        out = out.slice(0, at);
        break;
      case 1:
        out = out.slice(0, at) + r.pick(BREAKERS) + out.slice(at);
        break;
      case 2:
        out = out.slice(0, at) + out.slice(at + 1);
        break;
      case 3:
        out = out.slice(0, at) + r.pick(BREAKERS) + out.slice(at + 1);
        break;
      case 4: {
        const end = Math.min(out.length, at + r.int(1, 40));
        out = out.slice(0, end) + out.slice(at, end) + out.slice(end);
        break;
      }
      default:
        out = r.pick(["\ufeff", " \n\t", "\u00a0", ")]}'\n", ""]) + out;
    }
  }
  return out;
}

interface Input {
  text: string;
  /** Built from structure only (not broken as text): the secret-leak check applies. */
  structural: boolean;
  env: Record<string, string>;
}

const ENV_VALUES = [
  "",
  "http://127.0.0.1:9000",
  "ftp://x",
  "http://u:p@h",
  "us-east-1",
  "EU",
  oddString,
];

function generate(r: Rng, baseEnvironment: Record<string, string>): Input {
  const json5 = r.bool(0.3);
  let text = toText(topLevel(r), r, json5);
  const structural = !r.bool(0.35);
  if (!structural) text = breakText(text, r);
  const env = { ...baseEnvironment };
  if (r.bool(0.1)) {
    const name = r.pick([
      "AWS_ENDPOINT_URL",
      "AWS_ENDPOINT_URL_S3",
      "AWS_REGION",
      "AWS_DEFAULT_REGION",
    ]);
    const value = r.pick(ENV_VALUES);
    env[name] = typeof value === "string" ? value : value(r);
  }
  return { text, structural, env };
}

/** Fixed edge cases, run once in process. */
function edgeCases(): string[] {
  const entry = (extra: string) => `[{"uri":"s3://b/k"${extra}}]`;
  return [
    "",
    "   ",
    "\ufeff",
    "null",
    "[]",
    "{}",
    "[null]",
    "[[]]",
    '{"datasets":1}',
    '{"datasets":[],"extra":1}',
    '{"__proto__":{"datasets":[{"uri":"s3://b/k"}]}}',
    '[{"__proto__":{"uri":"s3://b/k"}}]',
    entry(',"__proto__":{"etag":1}'),
    entry(',"constructor":{"prototype":{"polluted":1}}'),
    entry(',"volumeOptions":{"__proto__":{"kind":"dynamic"}}'),
    `[${"[".repeat(100_000)}${"]".repeat(100_000)}]`,
    `${"{".repeat(50_000)}`,
    `[${Array.from({ length: 10_001 }, (_, i) => `{"uri":"s3://b/k${i}"}`).join(",")}]`,
    `[${" ".repeat(16 * 1024 * 1024)}]`,
    entry(`,"volumeOptions":{"kind":"dynamic","size":"${"9".repeat(1_000_000)}Ti"}`),
    entry(`,"name":"${"x".repeat(160)}"`),
    entry(`,"name":"${"x".repeat(161)}"`),
    '[{"uri":"s3://b/k","name":"a"},{"uri":"s3://b/k2","name":"A"}]',
    entry(',"etag":"\\"0123456789abcdef0123456789ABCDEF\\""'),
    entry(`,"awsAccessKeyId":"${SECRET_MARK}1"`),
    entry(`,"awsSecretAccessKey":"${SECRET_MARK}2"`),
  ];
}

// ---------------------------------------------------------------------------------------------
// Oracles.

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._+=@,-]{0,159}$/;

/**
 * Whether text shows (part of) a secret: generated secrets carry SECRET_MARK, and only in
 * credential fields and the `user:password@` of URIs and endpoints.
 */
function showsSecret(text: string): boolean {
  return text.includes(SECRET_MARK.slice(0, 8));
}

interface Checked {
  accepted: boolean;
  ms: number;
  messageLength: number;
}

function checkParse(input: Input): Checked {
  const started = performance.now();
  let specs: ReturnType<typeof parseDatasetsText> | undefined;
  let thrown: unknown;
  // The library must print nothing itself (the CLI is the only layer that writes).
  const printed: string[] = [];
  const { warn, log, error } = console;
  console.warn =
    console.log =
    console.error =
      (...args: unknown[]) => {
        printed.push(`${args.map(String).join(" ")}\n`);
      };
  try {
    specs = parseDatasetsText(input.text, "fuzz", input.env);
  } catch (caught) {
    thrown = caught;
  } finally {
    Object.assign(console, { warn, log, error });
  }
  const ms = performance.now() - started;
  expect(ms, "parse time").toBeLessThan(PARSE_BOUND_MS);
  // json5 once printed a console.warn for U+2028/U+2029 in strings (now silenced).
  expect(printed.join(""), "printed").toBe("");
  if (specs !== undefined) {
    expect(Object.isFrozen(specs)).toBe(true);
    expect(specs.length).toBeGreaterThan(0);
    const names = new Set<string>();
    for (const spec of specs) {
      expect(Object.isFrozen(spec)).toBe(true);
      expect(spec.name).toMatch(NAME);
      expect(names.has(spec.name.toLowerCase()), "duplicate name accepted").toBe(false);
      names.add(spec.name.toLowerCase());
      expect(spec.uri.startsWith("s3://")).toBe(true);
      expect(Object.getPrototypeOf(spec)).toBe(Object.prototype);
    }
    return { accepted: true, ms, messageLength: 0 };
  }
  if (!(thrown instanceof DsfetchError)) {
    throw new Error(
      `not a DsfetchError: ${thrown instanceof Error ? (thrown.stack ?? thrown.message) : String(thrown)}`,
    );
  }
  expect(thrown.exitCode, thrown.message).toBe(2);
  expect(thrown.message.length).toBeGreaterThan(0);
  const text = `${thrown.message}\n${thrown.hint ?? ""}\n${thrown.expected ?? ""}\n${thrown.found ?? ""}`;
  expect(stackLines(text)).toEqual([]);
  // Secrets of a `user:password@` in malformed URIs were once echoed (now scrubbed).
  if (input.structural && showsSecret(text)) {
    throw new Error(`a secret in the error: ${text.slice(0, 1000)}`);
  }
  return { accepted: false, ms, messageLength: thrown.message.length };
}

function show(text: string): string {
  const shown = text.length > 400 ? `${text.slice(0, 400)}… (${text.length} chars)` : text;
  return JSON.stringify(shown);
}

function checkPrototypes(): void {
  expect(Object.keys(Object.prototype)).toEqual([]);
  expect(
    Object.getOwnPropertyNames(Object.prototype).filter((k) => /polluted|uri|etag/.test(k)),
  ).toEqual([]);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.keys(Array.prototype)).toEqual([]);
}

type Route = "stdin" | "file" | "env";

interface CliCase {
  input: Input;
  bytes: Buffer;
  route: Route;
  json: boolean;
  command: "plan" | "fetch";
}

/** Invalid UTF-8 sequences spliced into the bytes. */
function corruptUtf8(bytes: Buffer, r: Rng): Buffer {
  const at = r.int(0, bytes.length);
  const bad = r.pick([
    [0xff],
    [0xc0, 0x80],
    [0x80],
    [0xe2, 0x82],
    [0xed, 0xa0, 0x80],
    [0xf8, 0x88, 0x80, 0x80, 0x80],
  ]);
  return Buffer.concat([bytes.subarray(0, at), Buffer.from(bad), bytes.subarray(at)]);
}

async function expectedFor(
  c: CliCase,
  path: string,
  env: Record<string, string>,
): Promise<DsfetchError | undefined> {
  if (c.route === "file") await writeFile(path, c.bytes);
  const source: DatasetsSource =
    c.route === "stdin"
      ? { datasets: "-", env, stdin: Readable.from([c.bytes]) }
      : c.route === "file"
        ? { datasets: path, env }
        : { env: { ...env, DSFETCH_DATASETS: c.bytes.toString("utf8") } };
  try {
    await loadDatasets(source);
    return undefined;
  } catch (error) {
    if (error instanceof DsfetchError) return error;
    throw new Error(
      `loadDatasets threw a non-DsfetchError for ${show(c.bytes.toString("utf8"))}: ${(error as Error).stack}`,
    );
  }
}

/** Text as it reads back after being written as UTF-8 (a lone surrogate becomes U+FFFD). */
function asWritten(text: string): string {
  return Buffer.from(text, "utf8").toString("utf8");
}

/** The environment of the CLI process for a case (what dsfetch sees). */
function envFor(c: CliCase, storage: string): Record<string, string> {
  // A process environment cannot hold NUL bytes: such generated values are dropped here. It
  // holds bytes, not UTF-16: a lone surrogate reaches the child as U+FFFD, so the expected error
  // is computed from the value as the child reads it (CI stop 18: "a\uD800" vs "a\uFFFD").
  const generated = Object.fromEntries(
    Object.entries(c.input.env)
      .filter(([, value]) => !value.includes("\0"))
      .map(([name, value]) => [name, asWritten(value)]),
  );
  const extra: Record<string, string> = {
    ...generated,
    AWS_ENDPOINT_URL: closedEndpoint,
    AWS_ACCESS_KEY_ID: "fuzzkey",
    AWS_SECRET_ACCESS_KEY: "fuzzsecretkey",
    DSFETCH_STORAGE_ROOT: storage,
    DSFETCH_TEAM: "ml",
    DSFETCH_EPHEMERAL_ROOT: join(storage, "eph"),
  };
  if (c.route === "env") extra.DSFETCH_DATASETS = c.bytes.toString("utf8");
  return cliEnv(extra);
}

async function checkCli(c: CliCase, path: string, storage: string, fc: FaultCase): Promise<void> {
  const env = envFor(c, storage);
  const expected = await expectedFor(c, path, baseEnv(env));
  if (expected === undefined) throw new Error("the input was accepted: not a CLI case");
  const args = [c.command, "--datasets", c.route === "stdin" ? "-" : path];
  if (c.route === "env") args.splice(1, 2);
  if (c.json) args.push("--json");
  const started = startCli(args, env, c.route === "stdin" ? c.bytes : "");
  const timer = setTimeout(() => started.child.kill("SIGKILL"), 30_000);
  const end = await started.exit;
  clearTimeout(timer);
  const stdout = started.stdout();
  const stderr = started.stderr();
  const what = `${c.command} via ${c.route}${c.json ? " --json" : ""}: input ${show(c.bytes.toString("utf8"))}\nexit ${end.code} signal ${end.signal}\n--- stderr\n${stderr.slice(0, 2000)}\n--- stdout\n${stdout.slice(0, 2000)}`;
  expect(end.signal, what).toBeNull();
  expect(end.code, what).not.toBe(1);
  expect(end.code, what).toBe(expected.exitCode);
  expect(stackLines(stderr), what).toEqual([]);
  const redactor = new Redactor().addEnv(baseEnv(env));
  if (c.json) {
    expect(stdout, what).toBe(
      asWritten(redactor.redact(`${JSON.stringify({ error: expected.toJSON() })}\n`)),
    );
    expect(stderr, what).toBe("");
  } else {
    expect(stderr.split("\n")[0], what).toMatch(/^dsfetch: error: [^\n]+ \[[A-Z_]+\]$/);
    expect(stderr, what).toBe(asWritten(redactor.redact(renderError(expected))));
    expect(stdout, what).toBe("");
  }
  if (c.input.structural && showsSecret(`${stdout}${stderr}`)) {
    throw new Error(`a secret in the output: ${what}`);
  }
  fc.count(`exit ${end.code}`);
}

describe("a fuzzer over the datasets array", () => {
  it(`in process: ${RUNS} x ${IN_PROCESS_PER_RUN} generated inputs and the edge cases`, async () => {
    const c = report.case("in process");
    const env = { AWS_REGION: "us-east-1" };
    await c.run(-1, async () => {
      for (const [i, text] of edgeCases().entries()) {
        try {
          const r = checkParse({ text, structural: true, env });
          c.count(r.accepted ? "accepted" : "rejected");
          c.count("edge cases");
        } catch (error) {
          throw new Error(`edge case ${i} ${show(text)}: ${(error as Error).message}`);
        }
      }
      return {};
    });
    let maxMs = 0;
    let longest = 0;
    for (let run = 0; run < RUNS; run++) {
      await c.run(run, async () => {
        const failures: string[] = [];
        for (let i = 0; i < IN_PROCESS_PER_RUN; i++) {
          const input = generate(rng, env);
          try {
            const r = checkParse(input);
            c.count(r.accepted ? "accepted" : "rejected");
            if (r.messageLength > LONG_MESSAGE) c.count(`messages > ${LONG_MESSAGE} chars`);
            maxMs = Math.max(maxMs, r.ms);
            longest = Math.max(longest, r.messageLength);
          } catch (error) {
            failures.push(
              `input ${i} ${show(input.text)} env ${JSON.stringify(input.env)}:\n${(error as Error).message}`,
            );
          }
        }
        if (failures.length > 0) {
          throw new Error(
            `${failures.length} of ${IN_PROCESS_PER_RUN} inputs failed (seed ${SEED}); the first ones:\n\n${failures.slice(0, 5).join("\n\n")}`,
          );
        }
        return {};
      });
    }
    await c.run(RUNS, async () => {
      checkPrototypes();
      return {};
    });
    c.note(`slowest parse ${Math.round(maxMs)} ms, longest message ${longest} chars`);
    c.finish();
  }, 300_000);

  it(
    `through the CLI: ${RUNS} x ${CLI_PER_RUN} rejected inputs, exit 2 and a clean one-line error`,
    async () => {
      const c = report.case("cli");
      const storage = join(scratch, "storage");
      await mkdir(storage, { recursive: true });
      const cliRng = rngFor("config-fuzz-cli");
      const probe = join(scratch, "probe.json");
      for (let run = 0; run < RUNS; run++) {
        await c.run(run, async () => {
          const cases: CliCase[] = [];
          while (cases.length < CLI_PER_RUN) {
            const input = generate(cliRng, { AWS_REGION: "us-east-1" });
            if (input.text.length > 200_000) continue;
            let bytes: Buffer = Buffer.from(input.text, "utf8");
            if (cliRng.bool(0.1)) bytes = corruptUtf8(bytes, cliRng);
            const route: Route =
              bytes.length < 100_000 && !bytes.includes(0) && cliRng.bool(0.25)
                ? "env"
                : cliRng.bool()
                  ? "file"
                  : "stdin";
            const candidate: CliCase = {
              input,
              bytes,
              route,
              json: cliRng.bool(0.3),
              command: cliRng.bool(0.7) ? "plan" : "fetch",
            };
            // Only what the library rejects: a valid array would go on to S3.
            if (
              (await expectedFor(candidate, probe, baseEnv(envFor(candidate, storage)))) ===
              undefined
            ) {
              c.count("accepted, not sent");
            } else cases.push(candidate);
          }
          const failures = (
            await mapLimit(cases, 2, (candidate, i) =>
              checkCli(candidate, join(scratch, `datasets-${run}-${i}.json`), storage, c).then(
                () => undefined,
                (error: Error) => error.message,
              ),
            )
          ).filter((failure) => failure !== undefined);
          if (failures.length > 0) {
            throw new Error(
              `${failures.length} of ${cases.length} CLI runs failed (seed ${SEED}); the first ones:\n\n${failures.slice(0, 5).join("\n\n")}`,
            );
          }
          return {};
        });
      }
      c.finish();
    },
    RUNS * 60_000 + 60_000,
  );
});
