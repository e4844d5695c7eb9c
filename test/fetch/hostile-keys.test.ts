// A folder dataset whose listing holds a key that would land outside the dataset directory
// (or cannot be a path in it) fails with exit 8 / UNSAFE_PATH before any object is
// downloaded, names the key, and leaves nothing behind.
//
// MinIO itself refuses most such keys: `..` and `.` segments (XMinioInvalidResourceName),
// empty segments `a//b` (XMinioInvalidObjectName); a key `/abs` is stored as `abs`. It stores
// both `x` and `x/y` but its listing shows only `x`. Keys with control characters it stores
// and lists. What it will not list is injected into the ListObjectsV2 XML by the proxy, the
// way a hostile or broken S3-compatible store would serve it.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type CliResult, runCli } from "../harness/cli.ts";
import {
  type FaultProxy,
  injectListEntries,
  isListObjectsV2,
  startFaultProxy,
} from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

const TEAM = "ml";

interface DatasetJson {
  name: string;
  error?: { code: string; message: string; hint?: string };
}

let bucket: string;
let scratch: string;
let proxy: FaultProxy | undefined;
const small = randomBytes(1000);
const large = randomBytes(3 * 1024 * 1024);

interface HostileCase {
  title: string;
  /** Keys relative to the case's prefix that exist in the store (besides ok.txt, big.bin). */
  stored: string[];
  /** Keys relative to the prefix injected into the listing. */
  injected: string[];
  /** What the message must name. */
  offending: string;
}

const cases: HostileCase[] = [
  {
    title: "a key with ../ segments",
    stored: [],
    injected: ["a/../../escape"],
    offending: "a/../../escape",
  },
  { title: "a key that is ../", stored: [], injected: ["../escape"], offending: "../escape" },
  {
    title: "an absolute key (empty first segment)",
    stored: [],
    injected: ["/abs"],
    offending: "/abs",
  },
  { title: "a key with an empty segment", stored: [], injected: ["a//b"], offending: "a//b" },
  { title: "a key with a ./ segment", stored: [], injected: ["a/./b"], offending: "a/./b" },
  {
    title: "a key with a control character (stored for real)",
    stored: ["a/\u0001b"],
    injected: [],
    offending: "a/\u0001b",
  },
  {
    title: "a key with a newline (stored for real)",
    stored: ["nl/x\ny"],
    injected: [],
    offending: "nl/x\ny",
  },
  {
    title: "a file/directory clash, x and x/y (both stored; MinIO lists only x)",
    stored: ["x", "x/y"],
    injected: ["x/y"],
    offending: "x/y",
  },
];

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-hostile-"));
  bucket = await createBucket("hostile");
  await Promise.all(
    [...cases.keys(), "ok"].flatMap((i) => {
      const prefix = `case-${i}/`;
      const stored = typeof i === "number" ? (cases[i] as HostileCase).stored : [];
      return [
        putObject(bucket, `${prefix}ok.txt`, small),
        putObject(bucket, `${prefix}big.bin`, large),
        ...stored.map((key) => putObject(bucket, prefix + key, small)),
      ];
    }),
  );
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function fetchFolder(uri: string, name: string, inject: string[]) {
  const p = await startFaultProxy(s3Info().endpoint);
  proxy = p;
  if (inject.length > 0) {
    p.rewriteResponses({
      match: (request, status) => status === 200 && isListObjectsV2(request),
      rewrite: (body) =>
        injectListEntries(
          body.toString("utf8"),
          inject.map((key) => ({ key, size: 1, etag: "0123456789abcdef0123456789abcdef" })),
        ),
    });
  }
  const storage = await mkdtemp(join(scratch, "storage-"));
  const result: CliResult = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", TEAM, "--json"],
    {
      env: { ...testEnv(), AWS_ENDPOINT_URL: p.endpoint },
      stdin: JSON.stringify([{ uri, name }]),
      timeoutMs: 60_000,
    },
  );
  const json = result.stdout === "" ? undefined : JSON.parse(result.stdout);
  const [dataset] = (json?.datasets ?? []) as DatasetJson[];
  return { ...result, storage, dataset, data: join(storage, TEAM, "data") };
}

const diagnostics = (result: CliResult) =>
  `exit ${result.code}\n${result.stderr}\n${result.stdout}`;
const list = (dir: string) => readdir(dir).catch(() => [] as string[]);

/** Nothing published, no manifest, no temporary attempt left. */
async function expectNothingLeft(data: string): Promise<void> {
  expect((await list(data)).filter((entry) => entry !== ".dsfetch")).toEqual([]);
  expect(await list(join(data, ".dsfetch", "manifests"))).toEqual([]);
  expect(await list(join(data, ".dsfetch", "tmp"))).toEqual([]);
}

/** Object reads the proxy saw (listings excluded). */
function objectReads(p: FaultProxy) {
  return p.requests.filter((r) => r.method === "GET" && !isListObjectsV2(r));
}

describe("hostile keys in a folder dataset", () => {
  it("control: the same kind of folder without a hostile key is fetched", async () => {
    const result = await fetchFolder(`s3://${bucket}/case-ok/`, "control", []);
    expect(result.code, diagnostics(result)).toBe(0);
    const dir = join(result.data, "control");
    expect((await list(dir)).sort()).toEqual(["big.bin", "ok.txt"]);
    expect((await readFile(join(dir, "big.bin"))).equals(large)).toBe(true);
    expect(objectReads(proxy as FaultProxy).length).toBeGreaterThan(0);
  });

  for (const [i, c] of cases.entries()) {
    it(`${c.title}: exit 8 UNSAFE_PATH, nothing downloaded, nothing left`, async () => {
      const prefix = `case-${i}/`;
      const result = await fetchFolder(
        `s3://${bucket}/${prefix}`,
        `hostile-${i}`,
        c.injected.map((key) => prefix + key),
      );
      expect(result.code, diagnostics(result)).toBe(8);
      expect(result.dataset?.error?.code).toBe("UNSAFE_PATH");
      const message = result.dataset?.error?.message ?? "";
      // Named as given, or JSON-escaped (control characters).
      const named =
        message.includes(c.offending) || message.includes(JSON.stringify(c.offending).slice(1, -1));
      expect(named, message).toBe(true);
      const p = proxy as FaultProxy;
      // The listing was served (with the injected entries) and no object was read.
      expect(p.requests.some((r) => isListObjectsV2(r) && r.status === 200)).toBe(true);
      if (c.injected.length > 0) expect(p.requests.some((r) => r.rewritten)).toBe(true);
      expect(objectReads(p)).toEqual([]);
      await expectNothingLeft(result.data);
    });
  }

  it("a whole-bucket dataset listing an absolute key: exit 8, nothing downloaded", async () => {
    const whole = await createBucket("hostile-root");
    await putObject(whole, "fine.txt", small);
    const result = await fetchFolder(`s3://${whole}`, "whole", ["/etc/passwd"]);
    expect(result.code, diagnostics(result)).toBe(8);
    expect(result.dataset?.error?.code).toBe("UNSAFE_PATH");
    expect(result.dataset?.error?.message).toContain("/etc/passwd");
    expect(objectReads(proxy as FaultProxy)).toEqual([]);
    await expectNothingLeft(result.data);
  });
});
