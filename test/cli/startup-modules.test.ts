// What a dsfetch process loads of Node's own modules. Node's TLS stack (node:tls, node:https
// and its HTTP modules) took ~25-35 ms of CPU at every start (src/fetch/tls-module.ts), and
// `list`, `prune`, `wait` and every fetch from an http:// endpoint never use it: it is loaded
// when a connection needs it, not at start-up. A static import of node:tls, node:https or
// node:http anywhere in the command's code brings it back for every process.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

/** Node's own modules whose loading this guards against (as process.moduleLoadList names them). */
const TLS_AND_HTTP = ["NativeModule tls", "NativeModule https", "NativeModule _http_client"];

let scratch: string;
let hook: string;
let bucket: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-startup-modules-"));
  // Preloaded into the dsfetch process: at exit, the list of what Node loaded, into a file.
  hook = join(scratch, "module-list.cjs");
  await writeFile(
    hook,
    `process.on("exit", () => require("node:fs").writeFileSync(process.env.MODULE_LIST_OUT, process.moduleLoadList.join("\\n")));\n`,
  );
  bucket = await createBucket("startup");
  await putObject(bucket, "labels.txt", "cat\ndog\n");
});

afterAll(async () => {
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

/** Runs dsfetch with `args`; the Node modules it loaded. */
async function modulesLoadedBy(name: string, args: string[], stdin = ""): Promise<string[]> {
  const out = join(scratch, `${name}.txt`);
  const result = await runCli(args, {
    stdin,
    env: { ...testEnv(), NODE_OPTIONS: `--require ${hook}`, MODULE_LIST_OUT: out },
  });
  expect(result.code, result.stderr).toBe(0);
  return (await readFile(out, "utf8")).split("\n");
}

describe("start-up: Node's TLS and HTTP stacks are loaded only when used", () => {
  it("a fetch from an http:// endpoint, then list: neither loads node:tls nor node:https", async () => {
    const storage = join(scratch, "storage");
    await mkdir(storage);
    const datasets = JSON.stringify([{ uri: `s3://${bucket}/labels.txt` }]);
    const flags = ["--storage-root", storage, "--team", "ml"];
    const fetched = await modulesLoadedBy(
      "fetch",
      ["fetch", "--datasets", "-", ...flags],
      datasets,
    );
    // The hook saw the process: Node's own modules it needed are in the list.
    expect(fetched).toContain("NativeModule crypto");
    expect(fetched.filter((module) => TLS_AND_HTTP.includes(module))).toEqual([]);
    const listed = await modulesLoadedBy("list", ["list", ...flags]);
    expect(listed).toContain("NativeModule fs/promises");
    expect(listed.filter((module) => TLS_AND_HTTP.includes(module))).toEqual([]);
  });
});
