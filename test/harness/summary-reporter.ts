// Ends every run with one plain line, "N passed, N failed, N skipped", that CI and people can
// read without knowing vitest's output. Skipped tests are counted apart: never as passed. A
// test that did not run because a hook of its suite or file failed (vitest reports it
// "skipped") counts as failed: nothing it checks was checked.
import type { Reporter, TestCase, TestModule } from "vitest/node";

function underFailedHook(test: TestCase): boolean {
  for (let parent = test.parent; ; parent = parent.parent) {
    // A suite's (or file's) own errors are its hooks' (a failed test fails the suite too,
    // without an error of the suite's own).
    if (parent.errors().length > 0) return true;
    if (parent.type === "module") return false;
  }
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed += 1;
        else if (state === "failed") failed += 1;
        else if (test.options.mode === "run" && underFailedHook(test)) failed += 1;
        else skipped += 1;
      }
      if (module.state() === "failed" && [...module.children.allTests()].length === 0) failed += 1;
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
