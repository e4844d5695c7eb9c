// `run`'s command is looked up before anything is staged: a typo failed only after every
// dataset was staged (hours, on a large one), `-- ''` was an INTERNAL error after the staging,
// a directory said `spawn /tmp EACCES` (exploratory tester, 2026-12-08). What staging may
// create (a path under the mount root) is left to the spawn.
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commandProblem } from "../../src/cli/command-check.ts";
import { CLI_ENTRY, runCli, runProgram } from "../harness/cli.ts";
import { jobArgs } from "../harness/cli-process.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-run-check-"));
  bucket = await createBucket("run-check");
  await putObject(bucket, "labels.txt", "cat\ndog\n");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function runWith(command: string[], noMount = false) {
  const storage = await mkdtemp(join(root, "run-"));
  const args = jobArgs(storage, command);
  if (noMount) args.splice(1, 0, "--no-mount");
  const result = await runCli(args, {
    env: testEnv(),
    stdin: JSON.stringify([{ uri: `s3://${bucket}/labels.txt`, name: "labels" }]),
    timeoutMs: 60_000,
  });
  const staged = await readdir(join(storage, "ml", "data")).catch(() => [] as string[]);
  return { ...result, staged: staged.includes("labels"), storage };
}

describe("run: the command looked up before staging", () => {
  it("an empty command, one not on PATH, a directory, a file that is not executable: refused at once, nothing staged", async () => {
    const notExecutable = join(root, "script.sh");
    await writeFile(notExecutable, "#!/bin/sh\necho hi\n");
    await chmod(notExecutable, 0o644);
    const badInterpreter = join(root, "train.py");
    await writeFile(badInterpreter, "#!/opt/conda/bin/python9\nprint(1)\n");
    await chmod(badInterpreter, 0o755);
    const cases: [string[], number, string][] = [
      [[""], 127, 'cannot run "": the command after -- is empty'],
      [
        ["dsfetch-no-such-command", "x"],
        127,
        'cannot run "dsfetch-no-such-command": no such command',
      ],
      [[root], 126, `cannot run ${JSON.stringify(root)}: it is a directory`],
      [[notExecutable], 126, `cannot run ${JSON.stringify(notExecutable)}: it is not executable`],
      [
        [badInterpreter],
        127,
        'its interpreter "/opt/conda/bin/python9" (its #! line) does not exist',
      ],
    ];
    for (const [command, code, message] of cases) {
      const run = await runWith(command);
      expect(run.code, run.stderr).toBe(code);
      expect(run.stderr).toContain(message);
      expect(run.stderr).toContain("nothing was staged");
      expect(run.stderr).not.toContain("bug in dsfetch");
      expect(run.staged, `${command[0]}: staged`).toBe(false);
    }
  });

  it("a command under the mount root is left to the spawn (a dataset may hold it): staged, then 127", async () => {
    const storage = await mkdtemp(join(root, "mounted-"));
    const args = jobArgs(storage, [join(storage, "mnt", "labels", "train.sh")]);
    args.splice(1, 0, "--no-mount");
    const run = await runCli(args, {
      env: testEnv(),
      stdin: JSON.stringify([{ uri: `s3://${bucket}/labels.txt`, name: "labels" }]),
      timeoutMs: 60_000,
    });
    expect(run.code, run.stderr).toBe(127);
    expect(run.stderr).toContain("no such command");
    expect(await readdir(join(storage, "ml", "data"))).toContain("labels");
  });
});

describe("run from a working directory that was removed", () => {
  it("an absolute command runs as before (it was an INTERNAL error: process.cwd failed)", async () => {
    const storage = await mkdtemp(join(root, "gone-"));
    const gone = join(storage, "gone");
    const args = jobArgs(storage, ["/bin/echo", "ran"]);
    args.splice(1, 0, "--no-mount");
    const quoted = [process.execPath, CLI_ENTRY, ...args].map((a) => `'${a}'`).join(" ");
    const run = await runProgram(
      "/bin/sh",
      ["-c", `mkdir '${gone}' && cd '${gone}' && rmdir '${gone}' && exec ${quoted}`],
      {
        env: testEnv(),
        stdin: JSON.stringify([{ uri: `s3://${bucket}/labels.txt`, name: "labels" }]),
        timeoutMs: 60_000,
      },
    );
    expect(run.stderr).not.toContain("bug in dsfetch");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("ran");
  });
});

describe("commandProblem", () => {
  it("searches PATH as execvp does; PATH directories that staging fills are not judged", async () => {
    const bin = join(root, "bin");
    const other = join(root, "other");
    await mkdir(bin, { recursive: true });
    await mkdir(join(other, "tool"), { recursive: true });
    await writeFile(join(bin, "tool"), "#!/bin/sh\n");
    await chmod(join(bin, "tool"), 0o755);
    await writeFile(join(other, "plain"), "x");
    await chmod(join(other, "plain"), 0o644);
    const env = (path: string) => ({ PATH: path });
    // Found after a directory of the same name (skipped, as execvp does).
    expect(commandProblem("tool", env(`${other}:${bin}`), [])).toBeUndefined();
    expect(commandProblem("plain", env(`${other}:${bin}`), [])?.code).toBe(
      "COMMAND_NOT_EXECUTABLE",
    );
    expect(commandProblem("nothing", env(`${other}:${bin}`), [])?.code).toBe("COMMAND_NOT_FOUND");
    // A PATH with a directory under the mount root: it may be staged there.
    expect(commandProblem("nothing", env(`${bin}:/data/tools/bin`), ["/data"])).toBeUndefined();
    // Relative paths from the working directory; an empty PATH entry is the working directory.
    expect(commandProblem("./bin/tool", env(""), [], root)).toBeUndefined();
    expect(commandProblem("tool", env(`:${other}`), [], bin)).toBeUndefined();
    expect(commandProblem("./bin/none", env(""), [], root)?.code).toBe("COMMAND_NOT_FOUND");
    // No PATH at all: not judged.
    expect(commandProblem("nothing", {}, [])).toBeUndefined();
  });

  it("follows symbolic links to what staging will create; judges nothing from a deleted working directory (second tester, 2026-12-08)", async () => {
    const base = await mkdtemp(join(root, "links-"));
    const mnt = join(base, "mnt");
    const bin = join(base, "bin");
    await mkdir(bin);
    // A link in the image to a script a dataset will bring, and a PATH directory that is one.
    await symlink(join(mnt, "code", "train.sh"), join(bin, "train"));
    await symlink(join(mnt, "code"), join(bin, "codedir"));
    expect(commandProblem(join(bin, "train"), { PATH: "/bin" }, [mnt])).toBeUndefined();
    expect(commandProblem("train.sh", { PATH: join(bin, "codedir") }, [mnt])).toBeUndefined();
    // A mount root that is a link, the working directory inside it as its real path.
    const real = join(base, "real");
    await mkdir(real);
    await symlink(real, join(base, "mntlink"));
    expect(
      commandProblem("./code/train.sh", { PATH: "/bin" }, [join(base, "mntlink")], real),
    ).toBeUndefined();
    expect(
      commandProblem(join(real, "code", "train.sh"), { PATH: "/bin" }, [join(base, "mntlink")]),
    ).toBeUndefined();
    // Elsewhere, a dangling link is left to the spawn too (its target may be staged).
    await symlink(join(base, "nowhere"), join(bin, "dangling"));
    expect(commandProblem(join(bin, "dangling"), { PATH: "/bin" }, [])).toBeUndefined();
    // What is not there at all is still refused.
    expect(commandProblem(join(bin, "absent"), { PATH: "/bin" }, [mnt])?.code).toBe(
      "COMMAND_NOT_FOUND",
    );
  });

  it("a script's #! interpreter is looked up too, a CRLF #! line said as such", async () => {
    const base = await mkdtemp(join(root, "interp-"));
    const script = async (name: string, text: string) => {
      await writeFile(join(base, name), text);
      await chmod(join(base, name), 0o755);
      return join(base, name);
    };
    const missing = await script("a.py", "#!/opt/conda/bin/python9\nprint(1)\n");
    expect(commandProblem(missing, { PATH: "/bin" }, [])).toMatchObject({
      code: "COMMAND_NOT_FOUND",
      message: `cannot run ${JSON.stringify(missing)}: its interpreter "/opt/conda/bin/python9" (its #! line) does not exist`,
    });
    const crlf = await script("b.sh", "#!/bin/sh\r\necho hi\r\n");
    expect(commandProblem(crlf, { PATH: "/bin" }, [])?.message).toContain(
      "its #! line ends with a carriage return (Windows line endings)",
    );
    expect(await script("c.sh", "#!/bin/sh -e\necho hi\n")).toSatisfy(
      (path: string) => commandProblem(path, { PATH: "/bin" }, []) === undefined,
    );
    expect(await script("d.sh", "#! /usr/bin/env python3\n")).toSatisfy(
      (path: string) => commandProblem(path, { PATH: "/bin" }, []) === undefined,
    );
    // An interpreter that a dataset brings is left to the spawn.
    const staged = await script("e.py", "#!/data/env/bin/python\n");
    expect(commandProblem(staged, { PATH: "/bin" }, ["/data"])).toBeUndefined();
    // On PATH: found by name, its interpreter judged the same.
    expect(commandProblem("a.py", { PATH: base }, [])?.message).toContain("its interpreter");
  });
});
