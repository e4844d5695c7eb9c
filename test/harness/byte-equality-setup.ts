// Run before every test file (vitest.config.ts, setupFiles): byte arrays compared as bytes.
import { expect } from "vitest";
import { sameBytes } from "./byte-equality.ts";

expect.addEqualityTesters([sameBytes]);
