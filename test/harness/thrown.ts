// The DsfetchError a call throws; fails the test when it throws nothing or something else.
import { DsfetchError } from "../../src/errors.ts";

export function thrown(fn: () => unknown): DsfetchError {
  try {
    fn();
  } catch (error) {
    if (error instanceof DsfetchError) return error;
    throw error;
  }
  throw new Error("expected a DsfetchError, but nothing was thrown");
}
