// The README's first command: `npm run demo` uploads the bundled example and stages it for
// real. Run here against the test run's S3 server (DSFETCH_TEST_S3_*), as a real process.
import { spawn } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { baseEnv, REPO_ROOT } from "./harness/cli.ts";
import { s3Info } from "./harness/s3.ts";

describe("npm run demo", () => {
  it("stages the bundled example datasets from a local S3 server", async () => {
    const info = s3Info();
    await rm(join(REPO_ROOT, ".demo"), { recursive: true, force: true });
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [join(REPO_ROOT, "scripts", "demo.ts")], {
        cwd: REPO_ROOT,
        env: baseEnv({
          DSFETCH_TEST_S3_ENDPOINT: info.endpoint,
          DSFETCH_TEST_S3_ACCESS_KEY_ID: info.accessKeyId,
          DSFETCH_TEST_S3_SECRET_ACCESS_KEY: info.secretAccessKey,
        }),
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk;
      });
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stderr }));
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toContain("ephemeral");
    const data = join(REPO_ROOT, ".demo", "storage", "demo", "data");
    expect(await readFile(join(data, "labels.txt", "labels.txt"), "utf8")).toBe(
      "setosa\nversicolor\nvirginica\n",
    );
    expect((await readFile(join(data, "iris-table", "iris.csv"), "utf8")).split("\n")[0]).toBe(
      "sepal_length,sepal_width,petal_length,petal_width,species",
    );
    expect(await readFile(join(data, "images", "val", "003.txt"), "utf8")).toMatch(
      /^image val\/003: x+\n$/,
    );
  });
});
