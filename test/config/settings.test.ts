import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveSettings, type SettingsInput } from "../../src/config/settings.ts";
import { thrown } from "../harness/thrown.ts";

type Env = Record<string, string | undefined>;

const ENV_ALL: Env = {
  DSFETCH_STORAGE_ROOT: "/env/storage",
  DSFETCH_TEAM: "env-team",
  DSFETCH_MOUNT_ROOT: "/env/mount",
  DSFETCH_EPHEMERAL_ROOT: "/env/ephemeral",
};

describe("resolveSettings", () => {
  it("uses the defaults with no flags and no environment", () => {
    const settings = resolveSettings({}, {});
    expect(settings).toEqual({
      storageRoot: undefined,
      team: undefined,
      mountRoot: "/data",
      ephemeralRoot: join(tmpdir(), `dsfetch-ephemeral-${process.getuid?.()}`),
      ephemeralRootIsDefault: true,
      fallback: true,
    });
    expect(settings.ephemeralRoot.startsWith(tmpdir())).toBe(true);
    expect(isAbsolute(settings.ephemeralRoot)).toBe(true);
    expect(Object.isFrozen(settings)).toBe(true);
  });

  it("takes every setting from the environment", () => {
    expect(resolveSettings({}, ENV_ALL)).toEqual({
      storageRoot: "/env/storage",
      team: "env-team",
      mountRoot: "/env/mount",
      ephemeralRoot: "/env/ephemeral",
      ephemeralRootIsDefault: false,
      fallback: true,
    });
    expect(resolveSettings({}, { DSFETCH_FALLBACK: "0" }).fallback).toBe(false);
    expect(resolveSettings({}, { DSFETCH_FALLBACK: "1" }).fallback).toBe(true);
    expect(resolveSettings({}, { DSFETCH_FALLBACK: "" }).fallback).toBe(true);
    expect(() => resolveSettings({}, { DSFETCH_FALLBACK: "false" })).toThrow(
      'DSFETCH_FALLBACK: "false" is not 0 or 1',
    );
  });

  it("lets every flag win over its variable", () => {
    const flags: SettingsInput = {
      storageRoot: "/flag/storage",
      team: "flag-team",
      mountRoot: "/inputs",
      ephemeralRoot: "/flag/ephemeral",
      fallback: false,
    };
    expect(resolveSettings(flags, { ...ENV_ALL, DSFETCH_FALLBACK: "1" })).toEqual({
      storageRoot: "/flag/storage",
      team: "flag-team",
      mountRoot: "/inputs",
      ephemeralRoot: "/flag/ephemeral",
      ephemeralRootIsDefault: false,
      fallback: false,
    });
  });

  it.each<[keyof SettingsInput, string]>([
    ["storageRoot", "DSFETCH_STORAGE_ROOT"],
    ["team", "DSFETCH_TEAM"],
    ["mountRoot", "DSFETCH_MOUNT_ROOT"],
    ["ephemeralRoot", "DSFETCH_EPHEMERAL_ROOT"],
  ])("a %s flag wins over %s and leaves the others to the environment", (flag, variable) => {
    const value = flag === "team" ? "flag-team" : "/from/flag";
    const settings = resolveSettings({ [flag]: value }, ENV_ALL);
    expect(settings[flag]).toBe(value);
    const others = (Object.keys(ENV_ALL) as string[]).filter((name) => name !== variable);
    for (const name of others) {
      expect(Object.values(settings)).toContain(ENV_ALL[name]);
    }
  });

  it("treats empty variables as unset", () => {
    expect(
      resolveSettings(
        {},
        {
          DSFETCH_STORAGE_ROOT: "",
          DSFETCH_TEAM: "",
          DSFETCH_MOUNT_ROOT: "",
          DSFETCH_EPHEMERAL_ROOT: "",
        },
      ),
    ).toEqual(resolveSettings({}, {}));
  });

  it.each<[string, string]>([
    ["/mnt/shared/", "/mnt/shared"],
    ["/mnt//shared///", "/mnt/shared"],
    ["/mnt/a/../shared/./x", "/mnt/shared/x"],
    ["/", "/"],
  ])("normalises %j to %j", (given, normalized) => {
    expect(resolveSettings({ storageRoot: given, mountRoot: given }, {})).toMatchObject({
      storageRoot: normalized,
      mountRoot: normalized,
    });
  });

  it.each<[string, SettingsInput, Env, string]>([
    [
      "relative --storage-root",
      { storageRoot: "shared" },
      {},
      '--storage-root: "shared" is not an absolute path',
    ],
    [
      "relative --mount-root",
      { mountRoot: "./data" },
      {},
      '--mount-root: "./data" is not an absolute path',
    ],
    [
      "relative --ephemeral-root",
      { ephemeralRoot: "tmp" },
      {},
      '--ephemeral-root: "tmp" is not an absolute path',
    ],
    ["empty --storage-root", { storageRoot: "" }, {}, '--storage-root: "" is not an absolute path'],
    [
      "home-relative --mount-root",
      { mountRoot: "~/data" },
      {},
      '--mount-root: "~/data" is not an absolute path',
    ],
    ["NUL in a path", { storageRoot: "/mnt/a\0b" }, {}, "--storage-root:"],
    [
      "relative DSFETCH_STORAGE_ROOT",
      {},
      { DSFETCH_STORAGE_ROOT: "mnt/shared" },
      'DSFETCH_STORAGE_ROOT: "mnt/shared" is not an absolute path',
    ],
    [
      "relative DSFETCH_MOUNT_ROOT",
      {},
      { DSFETCH_MOUNT_ROOT: "inputs" },
      'DSFETCH_MOUNT_ROOT: "inputs" is not an absolute path',
    ],
    [
      "relative DSFETCH_EPHEMERAL_ROOT",
      {},
      { DSFETCH_EPHEMERAL_ROOT: "../eph" },
      'DSFETCH_EPHEMERAL_ROOT: "../eph" is not an absolute path',
    ],
  ])("rejects a %s", (_what, flags, env, message) => {
    const error = thrown(() => resolveSettings(flags, env));
    expect(error.code).toBe("USAGE");
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(message);
    expect(error.hint).toContain("absolute path");
  });

  it("rejects a relative variable even when a flag sets another setting", () => {
    const error = thrown(() =>
      resolveSettings({ storageRoot: "/ok" }, { DSFETCH_MOUNT_ROOT: "rel" }),
    );
    expect(error.message).toContain("DSFETCH_MOUNT_ROOT");
  });

  it.each(["ml-research", "team_1", "Vision.Team", "a"])("accepts the team handle %j", (team) => {
    expect(resolveSettings({ team }, {}).team).toBe(team);
  });

  it.each<[SettingsInput, Env, string, string]>([
    [{ team: "a/b" }, {}, "--team", '"a/b" is not a single safe path component'],
    [{ team: ".." }, {}, "--team", '".." is not a single safe path component'],
    [{ team: ".hidden" }, {}, "--team", '".hidden"'],
    [{ team: "-x" }, {}, "--team", '"-x"'],
    [{ team: "my team" }, {}, "--team", '"my team"'],
    [{ team: "" }, {}, "--team", "the name is empty"],
    [{ team: "t".repeat(161) }, {}, "--team", "longer than 160 characters"],
    [{}, { DSFETCH_TEAM: "../other" }, "DSFETCH_TEAM", '"../other"'],
    [{}, { DSFETCH_TEAM: "a\nb" }, "DSFETCH_TEAM", "not a single safe path component"],
  ])("rejects the team handle in %j %j", (flags, env, source, problem) => {
    const error = thrown(() => resolveSettings(flags, env));
    expect(error.code).toBe("USAGE");
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(`${source}: the team handle is not usable`);
    expect(error.message).toContain(problem);
    expect(error.hint).toContain("letters, digits");
  });
});
