/**
 * Stand-in for K3s's bundled local-path-provisioner, which runs as a pod and so cannot run on simulated nodes.
 * Like the real one it provisions a host-path PersistentVolume on the node the scheduler picked for a
 * WaitForFirstConsumer claim of the `local-path` class, and deletes the volume once its claim is gone. Binding the
 * claim to the volume stays the real PV controller's job.
 */
import { KubeClient } from "./kubeClient";
import { sleep } from "./proc";

export const STORAGE_CLASS = "local-path";
const PROVISIONER = "rancher.io/local-path";
const SELECTED_NODE = "volume.kubernetes.io/selected-node";

interface Pvc {
  metadata: { name: string; namespace: string; uid: string; annotations?: Record<string, string> };
  spec: {
    storageClassName?: string;
    accessModes?: string[];
    resources?: { requests?: { storage?: string } };
  };
  status?: { phase?: string };
}
interface Pv {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { claimRef?: { namespace: string; name: string; uid?: string } };
  status?: { phase?: string };
}

export interface LocalPathSim {
  /** Volumes provisioned so far, by PV name. */
  provisioned(): string[];
  errors(): string[];
  stop(): Promise<void>;
}

/** The StorageClass K3s creates at install time; the harness creates it on the simulated cluster. */
export function localPathStorageClass(): unknown {
  return {
    apiVersion: "storage.k8s.io/v1",
    kind: "StorageClass",
    metadata: { name: STORAGE_CLASS, annotations: { "storageclass.kubernetes.io/is-default-class": "true" } },
    provisioner: PROVISIONER,
    reclaimPolicy: "Delete",
    volumeBindingMode: "WaitForFirstConsumer",
  };
}

export function startLocalPathSim(kubeconfigPath: string, intervalMs = 500): LocalPathSim {
  const kube = KubeClient.fromKubeconfig(kubeconfigPath);
  const made = new Set<string>();
  const errs: string[] = [];

  const reconcile = async (): Promise<void> => {
    const pvcs =
      ((await kube.get("/api/v1/persistentvolumeclaims")) as { items: Pvc[] } | undefined)?.items ?? [];
    const pvs = ((await kube.get("/api/v1/persistentvolumes")) as { items: Pv[] } | undefined)?.items ?? [];
    const claimed = new Set(pvs.map((pv) => pv.spec.claimRef?.uid).filter(Boolean));
    for (const pvc of pvcs) {
      const node = pvc.metadata.annotations?.[SELECTED_NODE];
      if (pvc.spec.storageClassName !== STORAGE_CLASS || pvc.status?.phase === "Bound" || !node) continue;
      if (claimed.has(pvc.metadata.uid)) continue;
      const name = `pvc-${pvc.metadata.uid}`;
      await kube.send("POST", "/api/v1/persistentvolumes", {
        apiVersion: "v1",
        kind: "PersistentVolume",
        metadata: { name, annotations: { "pv.kubernetes.io/provisioned-by": PROVISIONER } },
        spec: {
          capacity: { storage: pvc.spec.resources?.requests?.storage ?? "1Gi" },
          accessModes: pvc.spec.accessModes ?? ["ReadWriteOnce"],
          persistentVolumeReclaimPolicy: "Delete",
          storageClassName: STORAGE_CLASS,
          hostPath: {
            path: `/var/lib/rancher/k3s/storage/${name}_${pvc.metadata.namespace}_${pvc.metadata.name}`,
            type: "DirectoryOrCreate",
          },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [node] }] },
              ],
            },
          },
          claimRef: { namespace: pvc.metadata.namespace, name: pvc.metadata.name, uid: pvc.metadata.uid },
        },
      });
      made.add(name);
    }
    // Reclaim: the real provisioner deletes the directory and the volume when the claim is released.
    for (const pv of pvs) {
      if (pv.metadata.annotations?.["pv.kubernetes.io/provisioned-by"] !== PROVISIONER) continue;
      if (pv.status?.phase === "Released" || pv.status?.phase === "Failed") {
        await kube.send(
          "DELETE",
          `/api/v1/persistentvolumes/${pv.metadata.name}`,
          undefined,
          undefined,
          true,
        );
      }
    }
  };

  let running = true;
  const loop = (async () => {
    while (running) {
      await reconcile().catch((e: Error) => {
        if (errs[errs.length - 1] !== e.message) errs.push(e.message);
      });
      await sleep(intervalMs);
    }
  })();
  return {
    provisioned: () => [...made],
    errors: () => [...errs],
    stop: async () => {
      running = false;
      await loop;
    },
  };
}
