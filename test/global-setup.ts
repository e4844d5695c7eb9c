// vitest globalSetup: one real S3 server per test run (see test/harness/s3-server.ts), handed to
// the workers with project.provide("s3", …) and read there with inject("s3") / s3Info().

import type { TestProject } from "vitest/node";
import { type S3ServerInfo, startS3Server } from "./harness/s3-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    s3: S3ServerInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startS3Server();
  const info: S3ServerInfo = {
    kind: server.kind,
    endpoint: server.endpoint,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    region: server.region,
  };
  project.provide("s3", info);
  return async () => {
    await server.stop();
  };
}
