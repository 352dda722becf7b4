/**
 * `inference.probes`: the probe timings through config. Unset, every committed stack renders the design's probes
 * (and the await arithmetic that follows from them); set, the values reach the Deployment's probes, its progress
 * deadline and Pulumi's wait, and the startup budget still covers the model's load.
 */
import * as assert from "node:assert/strict";

import {
  deploymentAwaitSeconds,
  deploymentSpec,
  replicaRolloutSeconds,
  ROLLOUT,
  startupBudgetSeconds,
  startupFailureThreshold,
} from "../../components/inferenceStack";
import { DEFAULT_PROBES, PROBE_KEYS, ProbeConfig } from "../../config/sections/inference";
import { ConfigError, parseStackConfig } from "../../config/stack";
import { stackSource } from "./support";

/* eslint-disable @typescript-eslint/no-explicit-any */
const inferenceWith = (stack: string, patch: Record<string, unknown>) => ({
  ...(JSON.parse(stackSource(stack).get("inference")!) as Record<string, unknown>),
  ...patch,
});
const parse = (stack: string, patch: Record<string, unknown>) =>
  parseStackConfig(stack, stackSource(stack, { inference: inferenceWith(stack, patch) })).inference;
const problems = (stack: string, patch: Record<string, unknown>): string[] => {
  try {
    parse(stack, patch);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return [...e.problems];
  }
  return [];
};
const container = (d: any) => d.spec.template.spec.containers[0];
const render = (inf: ReturnType<typeof parse>) =>
  deploymentSpec(inf, "hash", { size: "1Gi", storageClass: "local-path" }, { gpuNodes: 1, entryNode: "n1" });

/** The drills' values (tests/realnode/realNode.test.ts). */
const SCALED: ProbeConfig = {
  startupPeriodSeconds: 1,
  minStartupFailureThreshold: 1,
  livenessPeriodSeconds: 2,
  livenessFailureThreshold: 3,
  readinessPeriodSeconds: 1,
  readinessFailureThreshold: 2,
};

describe("inference.probes (probe timings through config)", () => {
  it("defaults to the design's probes: startup 30 x 10 s at least, liveness 3 x 30 s, readiness 3 x 10 s", () => {
    assert.deepEqual(DEFAULT_PROBES, {
      startupPeriodSeconds: 10,
      minStartupFailureThreshold: 30,
      livenessPeriodSeconds: 30,
      livenessFailureThreshold: 3,
      readinessPeriodSeconds: 10,
      readinessFailureThreshold: 3,
    });
  });

  for (const stack of ["thor", "rtx4000", "p40"]) {
    it(`Pulumi.${stack}.yaml sets no probes: the design's values, rendered as before`, () => {
      const inf = parseStackConfig(stack, stackSource(stack)).inference;
      assert.deepEqual(inf.probes, DEFAULT_PROBES);
      const c = container(render(inf));
      assert.deepEqual(
        [c.startupProbe.periodSeconds, c.startupProbe.failureThreshold],
        [10, Math.max(30, Math.ceil(inf.modelLoadSeconds / 10))],
      );
      assert.deepEqual([c.livenessProbe.periodSeconds, c.livenessProbe.failureThreshold], [30, 3]);
      assert.deepEqual([c.readinessProbe.periodSeconds, c.readinessProbe.failureThreshold], [10, 3]);
      // The arithmetic with and without the parsed probes is the same: the defaults are the old constants.
      assert.equal(
        replicaRolloutSeconds(inf),
        replicaRolloutSeconds({ modelLoadSeconds: inf.modelLoadSeconds }),
      );
      assert.equal(
        deploymentAwaitSeconds(inf, 1),
        deploymentAwaitSeconds({ modelLoadSeconds: inf.modelLoadSeconds, maxReplicas: inf.maxReplicas }, 1),
      );
    });
  }

  it("threads configured values into the probes, the progress deadline and Pulumi's wait", () => {
    const inf = parse("rtx4000", { modelLoadSeconds: 10, probes: SCALED });
    assert.deepEqual(inf.probes, SCALED);
    const d = render(inf) as any;
    const c = container(d);
    assert.deepEqual([c.startupProbe.periodSeconds, c.startupProbe.failureThreshold], [1, 10]);
    assert.deepEqual([c.livenessProbe.periodSeconds, c.livenessProbe.failureThreshold], [2, 3]);
    assert.deepEqual([c.readinessProbe.periodSeconds, c.readinessProbe.failureThreshold], [1, 2]);
    const perReplica = ROLLOUT.terminationGraceSeconds + ROLLOUT.imagePullSeconds + 10 + 1;
    assert.equal(d.spec.progressDeadlineSeconds, perReplica);
    assert.equal(
      d.metadata.annotations["pulumi.com/timeoutSeconds"],
      String(inf.maxReplicas * (perReplica - ROLLOUT.imagePullSeconds) + ROLLOUT.imagePullSeconds),
    );
  });

  it("takes values as the engine hands them over (strings from `pulumi config set --path`)", () => {
    const inf = parse("p40", { probes: { livenessPeriodSeconds: "45", livenessFailureThreshold: "4" } });
    assert.deepEqual(inf.probes, {
      ...DEFAULT_PROBES,
      livenessPeriodSeconds: 45,
      livenessFailureThreshold: 4,
    });
  });

  it("keeps the startup budget at or above modelLoadSeconds for every period and floor", () => {
    for (const startupPeriodSeconds of [1, 3, 7, 10, 60])
      for (const minStartupFailureThreshold of [1, 30, 720])
        for (const load of [10, 11, 299, 300, 301, 421, 7200]) {
          const probes = { ...DEFAULT_PROBES, startupPeriodSeconds, minStartupFailureThreshold };
          const budget = startupBudgetSeconds(load, probes);
          assert.ok(
            budget >= load,
            `${startupPeriodSeconds} s x floor ${minStartupFailureThreshold}, load ${load}`,
          );
          assert.ok(
            budget < load + startupPeriodSeconds ||
              budget === minStartupFailureThreshold * startupPeriodSeconds,
          );
          assert.equal(budget, startupFailureThreshold(load, probes) * startupPeriodSeconds);
        }
  });

  it("refuses bad values with the key, the value and what is allowed, all at once", () => {
    assert.deepEqual(
      problems("p40", {
        probes: {
          startupPeriodSeconds: 0,
          livenessFailureThreshold: 11,
          readinessPeriodSeconds: "fast",
          period: 5,
        },
      }),
      [
        `inference.probes.period is not a known key: allowed keys are ${PROBE_KEYS.join(", ")}`,
        "inference.probes.startupPeriodSeconds = 0 is invalid: an integer from 1 to 60",
        "inference.probes.livenessFailureThreshold = 11 is invalid: an integer from 1 to 10",
        'inference.probes.readinessPeriodSeconds = "fast" is invalid: an integer from 1 to 300',
      ],
    );
    assert.deepEqual(problems("p40", { probes: 30 }), [
      "inference.probes = 30 is invalid: an object (set it with `pulumi config set --path`)",
    ]);
  });

  it("refuses a readiness probe slower to notice a hung server than liveness (failover order)", () => {
    assert.deepEqual(
      problems("p40", { probes: { livenessPeriodSeconds: 5, readinessFailureThreshold: 2 } }),
      [
        "inference.probes.readinessFailureThreshold = 2 is invalid: readiness (10 s × 2 = 20 s) must notice a hung server no later than liveness (5 s × 3 = 15 s), so an unhealthy pod leaves the Service before it is restarted",
      ],
    );
    assert.deepEqual(problems("p40", { probes: { livenessPeriodSeconds: 10 } }), []);
  });
});
