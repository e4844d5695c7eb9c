// FIFOs as the tests' stand-in for storage that stopped answering: open(2) of one for reading
// waits for a writer, as a call on a mount whose server is gone waits for it.
import { execFileSync } from "node:child_process";
import { closeSync, constants, openSync } from "node:fs";

/** Makes a FIFO at `path`. */
export function makeFifo(path: string): string {
  execFileSync("mkfifo", [path]);
  return path;
}

/**
 * Lets every open(2) blocked on the FIFO return (a non-blocking writer, closed at once: the
 * reader then reads nothing). Nothing happens when no reader waits (ENXIO).
 */
export function unblockFifo(path: string): void {
  try {
    closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch {
    // Nobody was waiting any more.
  }
}
