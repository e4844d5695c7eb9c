// vitest globalSetup: one real S3 server per test run (see test/harness/s3-server.ts), handed to
// the workers with project.provide("s3", …) and read there with inject("s3") / s3Info(); and
// the CLI bundled from src/ for this run (see test/harness/cli-bundle.ts), handed over as
// "cliEntry"; and the run's TMPDIR (see test/harness/scratch-dir.ts), which the workers,
// forked after this, inherit.

import type { TestProject } from "vitest/node";
import { bundleCliForRun } from "./harness/cli-bundle.ts";
import { type S3ServerInfo, startS3Server } from "./harness/s3-server.ts";
import { chooseScratchDir } from "./harness/scratch-dir.ts";

declare module "vitest" {
  export interface ProvidedContext {
    s3: S3ServerInfo;
    cliEntry: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // First: the S3 server's data goes there too.
  const scratch = await chooseScratchDir();
  process.env.TMPDIR = scratch.dir;
  console.log(`dsfetch tests: TMPDIR = ${scratch.description}`);
  const [server, bundle] = await Promise.all([startS3Server(), bundleCliForRun()]);
  const info: S3ServerInfo = {
    kind: server.kind,
    endpoint: server.endpoint,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    region: server.region,
  };
  project.provide("s3", info);
  project.provide("cliEntry", bundle.entry);
  // Watch mode: the sources may have changed since the last run (a failed build is written
  // into the bundle's entry, which then says why: the watcher goes on).
  project.onTestsRerun(() => bundle.rebuild());
  return async () => {
    await Promise.all([server.stop(), bundle.remove()]);
    await scratch.remove();
  };
}
