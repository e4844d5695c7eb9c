// The README's first command: starts a local S3 server (the one the tests use), uploads the
// bundled example data, and runs a real `dsfetch fetch` of examples/datasets.json into
// .demo/storage, then shows what was staged. Runs from source under Node 24.
//
//   npm run demo                              fetch the example, stop the server
//   npm run demo -- --serve .demo/s3.env      then keep the server up, with its settings
//                                             written as `export AWS_…` lines to that file
//                                             (for the README's run/sidecar examples)
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { startS3Server } from "../test/harness/s3-server.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const dataDir = join(root, "examples", "data");
const storage = join(root, ".demo", "storage");
const bucket = "dsfetch-demo";

const serveIndex = process.argv.indexOf("--serve");
const envFile =
  serveIndex === -1 ? undefined : (process.argv[serveIndex + 1] ?? join(root, ".demo", "s3.env"));
const server = await startS3Server({ label: "dsfetch demo" });
let exitCode = 1;
try {
  const s3 = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  await s3.send(new CreateBucketCommand({ Bucket: bucket })).catch((error: { name?: string }) => {
    if (error.name !== "BucketAlreadyOwnedByYou") throw error;
  });
  const files = (await readdir(dataDir, { recursive: true, withFileTypes: true })).filter((entry) =>
    entry.isFile(),
  );
  for (const file of files) {
    const path = join(file.parentPath, file.name);
    const key = relative(dataDir, path);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: await readFile(path) }));
  }
  s3.destroy();
  console.error(`demo: uploaded ${files.length} files to s3://${bucket}/ at ${server.endpoint}`);
  // A fresh storage root. dsfetch never creates one itself: a missing root means the shared
  // volume is not mounted, and it would fall back to an ephemeral volume.
  await rm(storage, { recursive: true, force: true });
  await mkdir(storage, { recursive: true });

  const args = [
    "fetch",
    "--datasets",
    join(root, "examples", "datasets.json"),
    "--storage-root",
    storage,
    "--team",
    "demo",
  ];
  console.error(`demo: dsfetch ${args.join(" ")}`);
  exitCode = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, "src", "cli", "entry.ts"), ...args], {
      stdio: "inherit",
      env: {
        ...process.env,
        AWS_ENDPOINT_URL: server.endpoint,
        AWS_ACCESS_KEY_ID: server.accessKeyId,
        AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
        AWS_REGION: server.region,
        AWS_EC2_METADATA_DISABLED: "true",
      },
    });
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? 1));
  });
  const staged = await readdir(join(storage, "demo", "data"), { recursive: true });
  console.error(`demo: dsfetch exited ${exitCode}; ${join(storage, "demo", "data")} now holds:`);
  for (const entry of staged.sort()) console.error(`  ${entry}`);
  if (envFile !== undefined) {
    const lines = [
      `export AWS_ENDPOINT_URL=${server.endpoint}`,
      `export AWS_ACCESS_KEY_ID=${server.accessKeyId}`,
      `export AWS_SECRET_ACCESS_KEY=${server.secretAccessKey}`,
      `export AWS_REGION=${server.region}`,
      "export AWS_EC2_METADATA_DISABLED=true",
    ];
    await mkdir(dirname(envFile), { recursive: true });
    await writeFile(envFile, `${lines.join("\n")}\n`);
    console.error(
      `demo: S3 server stays up; its settings are in ${envFile}; Ctrl-C (or kill ${process.pid}) stops it`,
    );
    await new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
    await rm(envFile, { force: true });
  }
} finally {
  await server.stop();
}
process.exitCode = exitCode;
