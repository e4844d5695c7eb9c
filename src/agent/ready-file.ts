/** The sidecar's ready file: written atomically when every dataset is staged, removed at shutdown. */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

export interface ReadyInfo {
  readonly ready: true;
  readonly pid: number;
  readonly at: string;
  readonly datasets: ReadonlyArray<{ name: string; path: string; mount: string }>;
}

export async function writeReadyFile(path: string, info: ReadyInfo): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(temporary, `${JSON.stringify(info, null, 2)}\n`);
  await rename(temporary, path);
}

export async function removeReadyFile(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** True when the file exists and says ready (a half-written file never does: it is renamed in). */
export async function readyFileSaysReady(path: string): Promise<boolean> {
  try {
    return (JSON.parse(await readFile(path, "utf8")) as Partial<ReadyInfo>).ready === true;
  } catch {
    return false;
  }
}
