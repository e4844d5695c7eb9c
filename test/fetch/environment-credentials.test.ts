// The environment's keys are taken as the SDK's chain would take them (its first link,
// fromEnv), without loading the chain; AWS_PROFILE set means the chain decides.

import { describe, expect, it } from "vitest";
import { environmentCredentials, partialEnvironmentKeys } from "../../src/fetch/client.ts";

describe("environmentCredentials", () => {
  it("takes both keys, and the session token when there is one", () => {
    expect(
      environmentCredentials({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "s3cr3t" }),
    ).toEqual({ accessKeyId: "AKIDEXAMPLE", secretAccessKey: "s3cr3t" });
    expect(
      environmentCredentials({
        AWS_ACCESS_KEY_ID: "ASIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY: "s3cr3t",
        AWS_SESSION_TOKEN: "token",
      }),
    ).toEqual({ accessKeyId: "ASIAEXAMPLE", secretAccessKey: "s3cr3t", sessionToken: "token" });
  });

  it("leaves the decision to the chain when a key is missing or empty", () => {
    expect(environmentCredentials({})).toBeUndefined();
    expect(environmentCredentials({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE" })).toBeUndefined();
    expect(environmentCredentials({ AWS_SECRET_ACCESS_KEY: "s3cr3t" })).toBeUndefined();
    expect(
      environmentCredentials({ AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "s3cr3t" }),
    ).toBeUndefined();
  });

  it("leaves the decision to the chain when AWS_PROFILE is set (the SDK prefers the profile)", () => {
    expect(
      environmentCredentials({
        AWS_PROFILE: "training",
        AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY: "s3cr3t",
      }),
    ).toBeUndefined();
  });
});

describe("partialEnvironmentKeys", () => {
  it("names the missing half of the environment's keys; nothing when both, neither, or a profile", () => {
    expect(partialEnvironmentKeys({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE" })).toBe(
      "AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY",
    );
    expect(partialEnvironmentKeys({ AWS_SECRET_ACCESS_KEY: "s3cr3t" })).toBe(
      "AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID",
    );
    expect(partialEnvironmentKeys({})).toBeUndefined();
    expect(
      partialEnvironmentKeys({ AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "s3cr3t" }),
    ).toBeUndefined();
    expect(
      partialEnvironmentKeys({ AWS_PROFILE: "training", AWS_ACCESS_KEY_ID: "AKIDEXAMPLE" }),
    ).toBeUndefined();
  });
});
