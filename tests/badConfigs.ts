/**
 * Broken stack configurations and the problem each must be refused with. Shared by the unit suite (the parser
 * alone) and the end-to-end suite (a real `pulumi preview`, which must fail before any node is contacted).
 */
import { stackSource } from "./unit/support";

/** A well-formed ed25519 host key (the nodes below are never dialled). */
export const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIlE5iz+KCoLfNwL3pZh3K7tIA8aryMC98Z7YNtwhh9B";
const RSA_HOST_KEY =
  "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC+tIp6pjN7wXlLIM8Au8Zo8qCow1s0k661p8s2xRV3Gss8ppH7Z0EAmMcglU6BJLH8LXsFainSw5o0h3u/8Z7QQadjccNrVbcJaqFbEXtE/V77rB6KxUI65wPXbvZwUkkJpY3uaM18ewkqFQNMdcNNs7tTGa81seeQDHaBoTRKNw==";
export const server = { name: "n1", host: "192.0.2.10", role: "server", hostKey: HOST_KEY };
const inference = (stack: string, patch: Record<string, unknown>) => {
  const base = JSON.parse(stackSource(stack).get("inference")!) as Record<string, unknown>;
  return { ...base, ...patch };
};

/** Overrides that turn the stack into a fleet of these sites (a stack sets `nodes` or `sites`, not both). */
const fleet = (...sites: unknown[]) => ({ nodes: undefined, sites });

export interface BadConfig {
  name: string;
  stack?: string;
  overrides: Record<string, unknown>;
  secret?: boolean;
  expect: RegExp;
}

export const BAD_CONFIGS: BadConfig[] = [
  {
    name: "unknown SKU",
    overrides: { sku: "a100" },
    expect: /^sku = "a100" is invalid: one of thor, rtx4000, p40$/,
  },
  {
    name: "missing SKU",
    overrides: { sku: undefined },
    expect: /^sku is required: one of thor, rtx4000, p40/,
  },
  {
    name: "missing SSH key",
    overrides: { sshPrivateKey: undefined },
    expect: /^sshPrivateKey is required: .*--secret/,
  },
  {
    name: "plaintext SSH key",
    overrides: {},
    secret: false,
    expect: /^sshPrivateKey is stored in plaintext/,
  },
  { name: "no nodes", overrides: { nodes: [] }, expect: /^nodes is required/ },
  { name: "nodes not a list", overrides: { nodes: "n1" }, expect: /^nodes is required/ },
  {
    name: "missing host",
    overrides: { nodes: [{ name: "n1", role: "server" }] },
    expect: /^nodes\[0\]\.host is required/,
  },
  {
    name: "bad host",
    overrides: { nodes: [{ ...server, host: "bad host!" }] },
    expect: /^nodes\[0\]\.host = "bad host!" is invalid/,
  },
  {
    name: "bad node name",
    overrides: { nodes: [{ ...server, name: "Node_1" }] },
    expect: /^nodes\[0\]\.name = "Node_1" is invalid: a DNS label/,
  },
  {
    name: "bad role",
    overrides: { nodes: [{ ...server, role: "master" }] },
    expect: /^nodes\[0\]\.role = "master" is invalid: server or agent/,
  },
  {
    name: "bad port",
    overrides: { nodes: [{ ...server, port: 70000 }] },
    expect: /^nodes\[0\]\.port = 70000 is invalid: an integer from 1 to 65535/,
  },
  {
    name: "port of wrong type",
    overrides: { nodes: [{ ...server, port: "ssh" }] },
    expect: /^nodes\[0\]\.port = "ssh" is invalid/,
  },
  {
    name: "unknown node key",
    overrides: { nodes: [{ ...server, ip: "1.2.3.4" }] },
    expect: /^nodes\[0\]\.ip is not a known key/,
  },
  {
    name: "bad host key",
    overrides: { nodes: [{ ...server, hostKey: "not-a-key" }] },
    expect: /^nodes\[0\]\.hostKey = "not-a-key" is invalid/,
  },
  {
    name: "RSA host key (the provider offers only SHA-1 ssh-rsa for it)",
    overrides: { nodes: [{ ...server, hostKey: RSA_HOST_KEY }] },
    expect:
      /^nodes\[0\]\.hostKey = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAA\.\.\." is invalid: an RSA host key cannot be pinned: .*OpenSSH 8\.8\+ refuses.*pin the node's ed25519 or ECDSA key/,
  },
  {
    name: "host key data mangled",
    overrides: { nodes: [{ ...server, hostKey: HOST_KEY.slice(0, -8) }] },
    expect: /^nodes\[0\]\.hostKey = .* is invalid: the key data does not decode to a ssh-ed25519 key/,
  },
  {
    name: "node without a pinned host key",
    overrides: { nodes: [{ name: "n1", host: "192.0.2.10", role: "server" }] },
    expect:
      /^nodes\[0\]\.hostKey is required: .*run `npm run pin-host-keys -- --stack \S+` .* or set insecureSkipHostKeyCheck: true on a lab stack/,
  },
  {
    name: "host key opt-out of the wrong type",
    overrides: { insecureSkipHostKeyCheck: "yes" },
    expect: /^insecureSkipHostKeyCheck = "yes" is invalid: true or false/,
  },
  {
    name: "duplicate node names",
    overrides: { nodes: [server, { name: "n1", host: "192.0.2.11", role: "agent", hostKey: HOST_KEY }] },
    expect: /^nodes\[1\]\.name = "n1" duplicates nodes\[0\]\.name/,
  },
  {
    name: "duplicate SSH endpoints",
    overrides: { nodes: [server, { name: "n2", host: "192.0.2.10", role: "agent", hostKey: HOST_KEY }] },
    expect: /^nodes\[1\]\.host = "192\.0\.2\.10:22" duplicates nodes\[0\]/,
  },
  {
    name: "two servers without HA",
    overrides: { nodes: [server, { name: "n2", host: "192.0.2.11", role: "server", hostKey: HOST_KEY }] },
    expect: /^nodes has 2 servers: K3s embedded etcd needs 1 server, or 3 for HA/,
  },
  { name: "no server", overrides: { nodes: [{ ...server, role: "agent" }] }, expect: /^nodes has no server/ },
  {
    name: "agent listed first",
    overrides: { nodes: [{ name: "a1", host: "192.0.2.11", role: "agent", hostKey: HOST_KEY }, server] },
    expect: /^nodes\[0\]\.role must be server/,
  },
  {
    name: "too many GPUs for Thor",
    stack: "thor",
    overrides: { nodes: [{ ...server, gpus: 2 }] },
    expect: /^nodes\[0\]\.gpus = 2 is invalid: NVIDIA Jetson AGX Thor nodes hold at most 1/,
  },
  {
    name: "Thor unified memory can reach the OOM killer",
    stack: "thor",
    overrides: { inference: inference("thor", { maxReplicas: 4, memoryLimit: "16Gi" }) },
    expect:
      /^inference\.maxReplicas = 4 can drive NVIDIA Jetson AGX Thor into the OOM killer: .* = 178 GiB; over by 50 GiB: lower inference\.maxReplicas to 2/,
  },
  {
    name: "unpinned K3s",
    overrides: { k3sVersion: "latest" },
    expect: /^k3sVersion = "latest" is invalid: a pinned K3s release/,
  },
  {
    name: "K3s too old",
    overrides: { k3sVersion: "v1.28.4+k3s1" },
    expect: /^k3sVersion = "v1\.28\.4\+k3s1" is invalid: v1\.30 or newer/,
  },
  {
    name: "bad toolkit version",
    overrides: { toolkitVersion: "latest" },
    expect: /^toolkitVersion = "latest" is invalid/,
  },
  {
    name: "old device plugin",
    overrides: { devicePluginVersion: "v0.14.3" },
    expect: /^devicePluginVersion = "v0\.14\.3" is invalid/,
  },
  {
    name: "DCGM on Thor",
    stack: "thor",
    overrides: { dcgmExporter: true },
    expect: /^dcgmExporter = true is invalid: NVIDIA Jetson AGX Thor has no DCGM/,
  },
  {
    name: "replicas below P40 range",
    overrides: { timeSlicingReplicas: 1 },
    expect:
      /^timeSlicingReplicas = 1 is invalid: an integer from 2 to 4 \(the range NVIDIA Tesla P40 supports\)/,
  },
  {
    name: "replicas above Thor range",
    stack: "thor",
    overrides: { timeSlicingReplicas: 9 },
    expect: /^timeSlicingReplicas = 9 is invalid: an integer from 4 to 8/,
  },
  {
    name: "non-numeric replicas",
    overrides: { timeSlicingReplicas: "four" },
    expect: /^timeSlicingReplicas = "four" is invalid/,
  },
  {
    name: "GPU memory over-subscription",
    overrides: { timeSlicingReplicas: 4, inference: inference("p40", { modelMemoryGiB: 8, maxReplicas: 2 }) },
    expect:
      /^inference\.modelMemoryGiB = 8 over-subscribes GPU memory: timeSlicingReplicas 4 × 8 GiB = 32 GiB, but NVIDIA Tesla P40 has 21 GiB usable .* over by 11 GiB/,
  },
  {
    name: "Thor keeps memory for the host",
    stack: "thor",
    overrides: { timeSlicingReplicas: 8, inference: inference("thor", { modelMemoryGiB: 14 }) },
    expect: /reserved for the host \(unified memory\).*over by 4 GiB/,
  },
  {
    name: "CUDA 13 image on P40",
    overrides: { inference: inference("p40", { cudaMajor: 13 }) },
    expect:
      /^inference\.cudaMajor = 13 is invalid: NVIDIA Tesla P40 \(Pascal \(GP102\), compute 6\.1\) runs images built for CUDA 11 or 12 only/,
  },
  {
    name: "CUDA 12 image on Thor",
    stack: "thor",
    overrides: { inference: inference("thor", { cudaMajor: 12 }) },
    expect: /^inference\.cudaMajor = 12 is invalid: .*CUDA 13 only/,
  },
  {
    name: "missing image",
    overrides: { inference: inference("p40", { image: undefined }) },
    expect: /^inference\.image is required/,
  },
  {
    name: "negative memory",
    overrides: { inference: inference("p40", { memoryRequest: "-4Gi" }) },
    expect: /^inference\.memoryRequest = "-4Gi" is invalid: a positive Kubernetes memory quantity/,
  },
  {
    name: "bad CPU",
    overrides: { inference: inference("p40", { cpuLimit: "lots" }) },
    expect: /^inference\.cpuLimit = "lots" is invalid/,
  },
  {
    name: "limit below request",
    overrides: { inference: inference("p40", { memoryLimit: "1Gi" }) },
    expect: /^inference\.memoryLimit = "1Gi" is invalid: must be at least inference\.memoryRequest/,
  },
  {
    name: "two slices per pod",
    overrides: { inference: inference("p40", { gpuSlicesPerPod: 2 }) },
    expect: /^inference\.gpuSlicesPerPod = 2 is invalid: only 1 is allowed/,
  },
  {
    name: "more pods than slices",
    overrides: { inference: inference("p40", { maxReplicas: 3 }) },
    expect: /^inference\.maxReplicas = 3 is invalid: the nodes advertise 2 GPU slice/,
  },
  {
    name: "maxReplicas below replicas",
    overrides: { inference: inference("p40", { replicas: 2, maxReplicas: 1 }) },
    expect: /^inference\.maxReplicas = 1 is invalid: must be at least inference\.replicas/,
  },
  {
    name: "negative model load time",
    overrides: { inference: inference("p40", { modelLoadSeconds: -5 }) },
    expect: /^inference\.modelLoadSeconds = -5 is invalid/,
  },
  {
    name: "probe period out of range",
    overrides: { inference: inference("p40", { probes: { livenessPeriodSeconds: 0 } }) },
    expect: /^inference\.probes\.livenessPeriodSeconds = 0 is invalid: an integer from 1 to 300$/,
  },
  {
    name: "unknown probe key",
    overrides: { inference: inference("p40", { probes: { livenessTimeoutSeconds: 5 } }) },
    expect:
      /^inference\.probes\.livenessTimeoutSeconds is not a known key: allowed keys are startupPeriodSeconds, /,
  },
  {
    name: "readiness slower than liveness",
    overrides: { inference: inference("p40", { probes: { readinessPeriodSeconds: 60 } }) },
    expect:
      /^inference\.probes\.readinessFailureThreshold = 3 is invalid: readiness \(60 s × 3 = 180 s\) must notice a hung server no later than liveness \(30 s × 3 = 90 s\)/,
  },
  {
    name: "unknown inference key",
    overrides: { inference: inference("p40", { gpus: 1 }) },
    expect: /^inference\.gpus is not a known key/,
  },
  {
    name: "bad setting name",
    overrides: { inference: inference("p40", { settings: { "model-name": "x" } }) },
    expect:
      /^inference\.settings\.model-name = "model-name" is invalid: keys must be environment variable names/,
  },
  {
    name: "NodePort out of range",
    overrides: { nodePort: 8080 },
    expect: /^nodePort = 8080 is invalid: an integer from 30000 to 32767/,
  },
  {
    name: "bad CIDR",
    overrides: { allowedCidrs: ["192.0.2.0/33"] },
    expect: /^allowedCidrs\[0\] = "192\.0\.2\.0\/33" is invalid/,
  },
  {
    name: "empty CIDR list",
    overrides: { allowedCidrs: [] },
    expect: /^allowedCidrs = \[\] is invalid: a non-empty list/,
  },
  {
    name: "quota below the workload",
    overrides: { quota: { gpu: 1 } },
    expect: /^quota\.gpu = 1 is invalid: must cover inference\.maxReplicas/,
  },
  {
    name: "quota memory below the workload",
    overrides: { quota: { requestsMemory: "8Gi" } },
    expect: /^quota\.requestsMemory = "8Gi" is invalid: must cover/,
  },
  {
    name: "negative storage",
    overrides: { storage: { size: "-1Gi" } },
    expect: /^storage\.size = "-1Gi" is invalid/,
  },
  {
    name: "storage of wrong type",
    overrides: { storage: "big" },
    expect: /^storage = "big" is invalid: an object/,
  },
  { name: "air-gap without paths", overrides: { airgap: {} }, expect: /^airgap\.k3sBinary is required/ },
  {
    name: "nodes and sites both set",
    overrides: { sites: [{ name: "plant-a", nodes: [server] }] },
    expect: /^nodes and sites are both set: .*move the nodes into a site/,
  },
  {
    name: "empty site list",
    overrides: fleet(),
    expect: /^sites = \[\] is invalid: a non-empty list of \{name, nodes/,
  },
  {
    name: "bad site name",
    overrides: fleet({ name: "Plant A", nodes: [server] }),
    expect: /^sites\[0\]\.name = "Plant A" is invalid: a DNS label/,
  },
  {
    name: "duplicate site names",
    overrides: fleet(
      { name: "plant-a", nodes: [server] },
      { name: "plant-a", nodes: [{ ...server, host: "192.0.2.11" }] },
    ),
    expect: /^sites\[1\]\.name = "plant-a" duplicates sites\[0\]\.name: site names must be unique/,
  },
  {
    name: "a site name that prefixes another's",
    overrides: fleet(
      { name: "plant-b", nodes: [server] },
      { name: "plant-b-east", nodes: [{ ...server, host: "192.0.2.11" }] },
    ),
    expect:
      /^sites\[1\]\.name = "plant-b-east" is invalid: starts with sites\[0\]\.name "plant-b" and a dash/,
  },
  {
    name: "an SSH endpoint in two sites",
    overrides: fleet(
      { name: "plant-a", nodes: [server] },
      { name: "plant-b", nodes: [{ ...server, name: "n2" }] },
    ),
    expect:
      /^sites\[1\]\.nodes\[0\]\.host = "192\.0\.2\.10:22" duplicates sites\[0\]\.nodes\[0\]: one node per SSH endpoint in the whole stack/,
  },
  {
    name: "a site's node without a host, named by its path",
    overrides: fleet(
      ...["a", "b", "c", "d"].map((s, i) => ({
        name: `plant-${s}`,
        nodes: [
          i === 3
            ? { name: "n1", role: "server", hostKey: HOST_KEY }
            : { ...server, host: `192.0.2.${20 + i}` },
        ],
      })),
    ),
    expect: /^sites\[3\]\.nodes\[0\]\.host is required/,
  },
  {
    name: "a site over its own GPU capacity",
    overrides: {
      ...fleet(
        { name: "plant-a", nodes: [{ ...server, gpus: 2 }] },
        { name: "plant-b", nodes: [{ ...server, host: "192.0.2.11" }] },
      ),
      inference: inference("p40", { maxReplicas: 3 }),
      quota: { gpu: 4 },
    },
    expect:
      /^sites\[1\] \(plant-b\): inference\.maxReplicas = 3 is invalid: the nodes advertise 2 GPU slice\(s\)/,
  },
  {
    name: "a site's NodePort out of range",
    overrides: fleet({ name: "plant-a", nodes: [server], nodePort: 8080 }),
    expect: /^sites\[0\]\.nodePort = 8080 is invalid: an integer from 30000 to 32767/,
  },
  {
    name: "a site overriding a SKU-wide key",
    overrides: fleet({ name: "plant-a", nodes: [server], timeSlicingReplicas: 4 }),
    expect:
      /^sites\[0\]\.timeSlicingReplicas is not a known key: allowed keys are name, nodes, nodePort, allowedCidrs, storage$/,
  },
  {
    name: "site batch over 100%",
    overrides: { rollout: { siteBatchSize: "150%" } },
    expect: /^rollout\.siteBatchSize = "150%" is invalid: an integer from 0 to 1000, or a share of the sites/,
  },
  {
    name: "wrong boolean",
    overrides: { inference: inference("p40", { readOnlyRootFilesystem: "yes" }) },
    expect: /^inference\.readOnlyRootFilesystem = "yes" is invalid: true or false/,
  },
  {
    // A preview with a missing air-gap file used to hang at the copy step instead of failing.
    name: "an air-gap file that does not exist",
    overrides: {
      airgap: {
        k3sBinary: "/nonexistent/forge-edge/k3s",
        installScript: "/nonexistent/forge-edge/install.sh",
        imagesTarball: "/nonexistent/forge-edge/k3s-airgap-images.tar",
      },
    },
    expect:
      /^airgap\.k3sBinary = "\/nonexistent\/forge-edge\/k3s" is invalid: a path to a readable file on the machine running pulumi \(no such file\)$/,
  },
];
