// The fault suite (issue 7): `npm run test:faults` runs test/faults/ with DSFETCH_FAULT_RUNS=20;
// `npm test` runs the same files in reduced mode (DSFETCH_FAULT_RUNS unset: 2 runs per case).
// Same S3 server, reporters and pool as vitest.config.ts; generous timeouts, one seed for the
// whole run (printed; DSFETCH_FAULT_SEED replays it), and a summary table at the end.
import { defineConfig } from "vitest/config";

const seed = process.env.DSFETCH_FAULT_SEED ?? String(Math.floor(Math.random() * 2 ** 32));

export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts", "test/faults/report-setup.ts"],
    setupFiles: ["test/harness/byte-equality-setup.ts"],
    pool: "forks",
    // A case runs all its runs in one test: 20 runs of the slowest case take minutes.
    testTimeout: 30 * 60_000,
    hookTimeout: 5 * 60_000,
    teardownTimeout: 60_000,
    reporters: ["default", "./test/harness/summary-reporter.ts"],
    env: { AWS_EC2_METADATA_DISABLED: "true", DSFETCH_FAULT_SEED: seed },
  },
});
