import { accessSync, constants } from "node:fs";

/** Whether this process may execute `path` (synchronous: a local program's lookup). */
export function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
