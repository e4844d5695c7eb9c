// Runs a command on a real pseudo-terminal (Python's pty module: Node has none without a
// native addon), types Ctrl-C once the command printed a marker, and returns what appeared
// on the terminal and how the command ended.
import { spawn } from "node:child_process";

const PTY_DRIVER = String.raw`
import os, pty, select, signal, sys, time
marker = sys.argv[1].encode()
how = sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[3], sys.argv[3:])
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
    if how == "ctrl-c":
        os.write(fd, b"\x03")
    else:
        os.kill(pid, signal.SIGINT)
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

/**
 * Runs `command` on a terminal and, once `marker` appeared on it, presses Ctrl-C (the
 * terminal signals its whole foreground group), or with "kill" sends SIGINT to the command's
 * process alone.
 */
export function ctrlCOnTerminal(
  command: readonly string[],
  marker: string,
  env: Record<string, string>,
  how: "ctrl-c" | "kill" = "ctrl-c",
): Promise<PtyResult> {
  return new Promise((resolve, reject) => {
    const driver = spawn("python3", ["-c", PTY_DRIVER, marker, how, ...command], {
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
