/**
 * The forge-edge CrossGuard policy pack: `pulumi preview --policy-pack policy`. The rules live in policies.ts
 * (pure functions, unit-tested in tests/unit/policy.test.ts); constructing the PolicyPack starts the analyzer's
 * gRPC server, so only the engine loads this file.
 */
import { PolicyPack } from "@pulumi/policy";

import { POLICIES } from "./policies";

new PolicyPack("forge-edge", {
  description:
    "forge-edge guard rails: GPU pods use the nvidia runtime, a priority class and probes; time-slicing fits " +
    "the SKU's GPU memory; no plaintext secrets in commands or ConfigMaps; NodePorts in range.",
  enforcementLevel: "mandatory",
  policies: [...POLICIES],
});
