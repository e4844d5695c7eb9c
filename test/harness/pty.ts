// Runs a command on a real pseudo-terminal (Python's pty module: Node has none without a
// native addon), types Ctrl-C once the command printed a marker, and returns what appeared
// on the terminal and how the command ended.
import { spawn } from "node:child_process";

const PTY_DRIVER = String.raw`
import os, pty, select, signal, sys, time
marker = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out = b""
def pump(timeout):
    global out
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return True
    try:
        data = os.read(fd, 65536)
    except OSError:
        return False
    out += data
    return bool(data)
deadline = time.time() + 60
while marker not in out and time.time() < deadline and pump(0.1):
    pass
if marker in out:
    os.write(fd, b"\x03")
status = None
while status is None:
    pump(0.1)
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
    elif time.time() > deadline + 30:
        os.kill(pid, signal.SIGKILL)
while pump(0.05):
    pass
sys.stdout.buffer.write(out)
sys.stdout.write("\nPTY-EXIT %d\n" % os.waitstatus_to_exitcode(status))
`;

export interface PtyResult {
  /** Everything written to the terminal (stdout and stderr of the command, and the echoed ^C). */
  output: string;
  /** The command's exit code, or minus the number of the signal that killed it. */
  exitCode: number;
}

/** Runs `command` on a terminal and presses Ctrl-C once `marker` appeared on it. */
export function ctrlCOnTerminal(
  command: readonly string[],
  marker: string,
  env: Record<string, string>,
): Promise<PtyResult> {
  return new Promise((resolve, reject) => {
    const driver = spawn("python3", ["-c", PTY_DRIVER, marker, ...command], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    driver.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    driver.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    driver.on("error", (error) =>
      reject(new Error(`python3 is needed to drive a pseudo-terminal: ${error.message}`)),
    );
    driver.on("close", (code) => {
      const match = /\nPTY-EXIT (-?\d+)\n$/.exec(stdout);
      if (code !== 0 || match === null) {
        reject(new Error(`the pty driver failed (exit ${code}): ${stderr}${stdout}`));
        return;
      }
      resolve({ output: stdout.slice(0, match.index), exitCode: Number(match[1]) });
    });
  });
}
