// Starts the same real S3 server the tests use (see test/harness/s3-server.ts) for people and
// benchmarks, prints how to reach it, and keeps it up until SIGINT/SIGTERM.
//
//   node scripts/s3-server.ts               # `export AWS_…=…` lines on stdout
//   node scripts/s3-server.ts --json        # one JSON object on stdout
//   node scripts/s3-server.ts --build-only  # ensure the MinIO binary exists, print its path

import { ensureMinioBinary } from "../test/harness/minio-binary.ts";
import { startS3Server } from "../test/harness/s3-server.ts";

const USAGE = "usage: node scripts/s3-server.ts [--json | --build-only]";

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

async function main(argv: string[]): Promise<number> {
  const args = new Set(argv);
  for (const a of args) {
    if (a === "-h" || a === "--help") {
      console.log(USAGE);
      return 0;
    }
    if (a !== "--json" && a !== "--build-only") {
      console.error(`unknown argument ${a}\n${USAGE}`);
      return 2;
    }
  }
  if (args.has("--build-only")) {
    if (args.has("--json")) {
      console.error(`--json and --build-only do not go together\n${USAGE}`);
      return 2;
    }
    console.log(await ensureMinioBinary());
    return 0;
  }

  const server = await startS3Server({ label: "dsfetch s3-server" });
  const vars: Record<string, string> = {
    AWS_ENDPOINT_URL: server.endpoint,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: server.region,
    AWS_EC2_METADATA_DISABLED: "true",
    // So `npx vitest run` in another shell reuses this server instead of starting its own.
    DSFETCH_TEST_S3_ENDPOINT: server.endpoint,
    DSFETCH_TEST_S3_ACCESS_KEY_ID: server.accessKeyId,
    DSFETCH_TEST_S3_SECRET_ACCESS_KEY: server.secretAccessKey,
  };
  if (args.has("--json")) {
    console.log(
      JSON.stringify({
        kind: server.kind,
        endpoint: server.endpoint,
        accessKeyId: server.accessKeyId,
        secretAccessKey: server.secretAccessKey,
        region: server.region,
        description: server.description,
      }),
    );
  } else {
    for (const [k, v] of Object.entries(vars)) console.log(`export ${k}=${shellQuote(v)}`);
  }
  console.error("dsfetch s3-server: up; press Ctrl-C (or send SIGTERM) to stop it");

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
    process.once("SIGHUP", resolve);
  });
  console.error(`dsfetch s3-server: ${signal}: stopping ${server.kind}…`);
  await server.stop();
  console.error("dsfetch s3-server: stopped");
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  },
);
