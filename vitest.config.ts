import { configDefaults, defineConfig } from "vitest/config";

/** Test files that keep both cores busy for long (see "projects" below). */
const HEAVY = ["test/faults/crowd.test.ts", "test/volumes/team-storage-race.test.ts"];

export default defineConfig({
  test: {
    // Starts one real S3 server per run. The first run on a machine may build MinIO from source
    // (several minutes): vitest 5 puts no time limit on globalSetup (hookTimeout applies to
    // beforeAll/afterAll in test files only), so no option is needed for that.
    globalSetup: ["test/global-setup.ts"],
    // Buffers compared as bytes by toEqual (vitest walks them element by element);
    // DSFETCH_TEST_CPU_LOG=<file>: each test file's CPU (test/harness/cpu-probe-setup.ts).
    setupFiles: [
      "test/harness/byte-equality-setup.ts",
      ...(process.env.DSFETCH_TEST_CPU_LOG ? ["test/harness/cpu-probe-setup.ts"] : []),
    ],
    pool: "forks",
    // Two test files at a time: most tests wait (spawned processes, bounds, MinIO), and one at
    // a time the run took 557-568 s on these 2-core machines, near the 10-minute budget
    // (per-file times added up to the wall time); two at a time 373 s, every test passing.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Stopping a container or MinIO at the end of the run.
    teardownTimeout: 60_000,
    reporters: ["default", "./test/harness/summary-reporter.ts"],
    // In-process code under test uses the default AWS credential chain: never let it probe
    // the EC2 instance metadata service (only loopback traffic is allowed on test machines).
    env: { AWS_EC2_METADATA_DISABLED: "true" },
    // Files that load both cores for long (16 dsfetch processes at once) run after all the
    // others, alone: beside them, tests of 1-second stall bounds failed (a stand-in
    // decompressor forking `dd` every 0.25 s took more than a second to do so).
    projects: [
      {
        extends: true,
        test: {
          name: "main",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...HEAVY],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: "heavy", include: HEAVY, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
