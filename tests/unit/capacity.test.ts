/** Per-node capacity rules: replicas spread over the GPU nodes, so what fits is decided node by node. */
import * as assert from "node:assert/strict";

import { capacityProblems, nodeCapacities } from "../../config/fit";
import { parseStackConfig } from "../../config/stack";
import { stackFileConfig, stackSource } from "./support";

describe("per-node capacity", () => {
  it("checks capacity per node: slices, model disk, and room for the replicas when one node is drained", () => {
    const site = {
      nodes: [
        { name: "s1", gpus: 1 },
        { name: "a1", gpus: 2 },
      ],
      timeSlicingReplicas: 4,
      replicas: 4,
      maxReplicas: 6,
      storageSize: "100Gi",
    };
    assert.deepEqual(nodeCapacities(site), [
      { name: "s1", slices: 4, inferencePods: 4, modelStorageBytes: 4 * 100 * 2 ** 30 },
      { name: "a1", slices: 8, inferencePods: 6, modelStorageBytes: 6 * 100 * 2 ** 30 },
    ]);
    assert.deepEqual(capacityProblems(site), []);
    const tooMany = capacityProblems({ ...site, replicas: 5 });
    assert.equal(tooMany.length, 1);
    assert.match(
      tooMany[0],
      /inference\.replicas = 5 does not fit when node a1 is drained: the other nodes advertise 4/,
    );
    assert.deepEqual(
      capacityProblems({ ...site, nodes: [site.nodes[0]], replicas: 4 }),
      [],
      "single node: nowhere to go",
    );
  });

  it("is part of the stack's validation: preview refuses a site that cannot drain a node", () => {
    const [pin] = JSON.parse(stackFileConfig("rtx4000")["forge-edge:nodes"]) as { hostKey?: string }[];
    const nodes = [
      { name: "s1", host: "192.0.2.10", role: "server", hostKey: pin.hostKey },
      { name: "a1", host: "192.0.2.20", role: "agent", hostKey: pin.hostKey },
    ];
    const inference = JSON.parse(stackFileConfig("rtx4000")["forge-edge:inference"]) as object;
    const src = (replicas: number) =>
      stackSource("rtx4000", {
        nodes,
        quota: undefined,
        inference: { ...inference, replicas, maxReplicas: 8 },
      });
    assert.equal(parseStackConfig("rtx4000", src(4)).inference.replicas, 4);
    assert.throws(
      () => parseStackConfig("rtx4000", src(5)),
      /inference\.replicas = 5 does not fit when node s1 is drained: the other nodes advertise 4 GPU slice/,
    );
  });
});
