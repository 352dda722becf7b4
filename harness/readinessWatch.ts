/**
 * The readiness the simulated site imposes, watched from outside the engine: for each Deployment and DaemonSet, the
 * time from the API first showing it to it being ready (its pods scheduled, GPUs advertised, pods marked ready by
 * kwok), and for each Service, from the API first showing it to its EndpointSlice holding a ready endpoint. The
 * bench's floor for those objects: what any client, not only the Pulumi provider, would have to wait for.
 * Also `apiRoundTripMs`: the median time of a server-side apply of a small ConfigMap (the provider's create).
 */
import * as https from "node:https";

import { KubeCreds } from "./kubeClient";

type Obj = {
  metadata: { name: string; namespace?: string; generation?: number; labels?: Record<string, string> };
  spec?: { replicas?: number };
  status?: Record<string, number | undefined>;
  endpoints?: { conditions?: { ready?: boolean } }[];
};

const WATCHES: { kind: string; path: string }[] = [
  { kind: "Deployment", path: "/apis/apps/v1/deployments" },
  { kind: "DaemonSet", path: "/apis/apps/v1/daemonsets" },
  { kind: "Service", path: "/api/v1/services" },
  { kind: "EndpointSlice", path: "/apis/discovery.k8s.io/v1/endpointslices" },
];

function ready(kind: string, o: Obj): boolean {
  const s = o.status ?? {};
  const observed = (s.observedGeneration ?? 0) >= (o.metadata.generation ?? 0);
  if (kind === "Deployment") {
    const want = o.spec?.replicas ?? 1;
    return observed && (s.availableReplicas ?? 0) >= want && (s.updatedReplicas ?? 0) >= want;
  }
  if (kind === "DaemonSet") {
    const want = s.desiredNumberScheduled ?? 0;
    return observed && (s.numberReady ?? 0) >= want && (s.updatedNumberScheduled ?? 0) >= want;
  }
  return false;
}

export interface ReadinessWatch {
  /** Milliseconds from first seen to ready, for `Deployment`, `DaemonSet` or `Service` `namespace/name`. */
  readinessMs(kind: string, namespace: string, name: string): number | undefined;
  stop(): void;
}

/** Starts watching every namespace; resolves once every watch is open. */
export async function watchReadiness(creds: KubeCreds): Promise<ReadinessWatch> {
  const url = new URL(creds.server);
  const agent = new https.Agent({
    ca: creds.caPem,
    cert: creds.certPem,
    key: creds.keyPem,
    keepAlive: false,
  });
  const seen = new Map<string, number>();
  const readyAt = new Map<string, number>();
  const requests: ReturnType<typeof https.request>[] = [];

  const onEvent = (kind: string, o: Obj): void => {
    const now = Date.now();
    const key = `${kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
    if (!seen.has(key)) seen.set(key, now);
    if (kind === "EndpointSlice") {
      const svc = o.metadata.labels?.["kubernetes.io/service-name"];
      const skey = `Service/${o.metadata.namespace ?? ""}/${svc}`;
      if (svc && !readyAt.has(skey) && (o.endpoints ?? []).some((e) => e.conditions?.ready === true))
        readyAt.set(skey, now);
    } else if (!readyAt.has(key) && ready(kind, o)) readyAt.set(key, now);
  };

  await Promise.all(
    WATCHES.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          const req = https.request(
            {
              host: url.hostname,
              port: Number(url.port || 443),
              path: `${w.path}?watch=1&timeoutSeconds=1800`,
              agent,
            },
            (res) => {
              if (res.statusCode !== 200) {
                reject(new Error(`watch ${w.path}: HTTP ${res.statusCode}`));
                return;
              }
              resolve();
              let buf = "";
              res.setEncoding("utf8");
              res.on("data", (chunk: string) => {
                buf += chunk;
                let nl: number;
                while ((nl = buf.indexOf("\n")) >= 0) {
                  const line = buf.slice(0, nl);
                  buf = buf.slice(nl + 1);
                  if (!line.trim()) continue;
                  const ev = JSON.parse(line) as { type: string; object: Obj };
                  if (ev.type === "ADDED" || ev.type === "MODIFIED") onEvent(w.kind, ev.object);
                }
              });
              res.on("error", () => undefined);
            },
          );
          req.on("error", (e) => reject(e));
          req.end();
          requests.push(req);
        }),
    ),
  );

  return {
    readinessMs(kind, namespace, name) {
      const key = `${kind}/${namespace}/${name}`;
      const a = seen.get(key);
      const b = readyAt.get(key);
      return a !== undefined && b !== undefined ? Math.max(0, b - a) : undefined;
    },
    stop() {
      for (const r of requests) r.destroy();
      agent.destroy();
    },
  };
}

/** One request on a kept-alive connection (as client-go keeps its connections), → status and body. */
function send(
  agent: https.Agent,
  url: URL,
  method: string,
  path: string,
  body?: string,
  contentType = "application/json",
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: Number(url.port || 443),
        method,
        path,
        agent,
        timeout: 15000,
        headers:
          body === undefined
            ? {}
            : { "content-type": contentType, "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/**
 * Median milliseconds of `n` server-side applies of one small ConfigMap, each a write, on one kept-alive connection
 * (after a first one that opens it); the ConfigMap is deleted afterwards.
 */
export async function apiRoundTripMs(creds: KubeCreds, n = 15): Promise<number> {
  const url = new URL(creds.server);
  const agent = new https.Agent({ ca: creds.caPem, cert: creds.certPem, key: creds.keyPem, keepAlive: true });
  const path = "/api/v1/namespaces/default/configmaps/forge-bench-rtt?fieldManager=forge-bench&force=true";
  const times: number[] = [];
  try {
    for (let i = 0; i <= n; i++) {
      const body = JSON.stringify({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "forge-bench-rtt", namespace: "default" },
        data: { i: String(i) },
      });
      const t = process.hrtime.bigint();
      const res = await send(agent, url, "PATCH", path, body, "application/apply-patch+yaml");
      if (i > 0) times.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (res.status >= 300)
        throw new Error(`apply of the round-trip ConfigMap: HTTP ${res.status} ${res.body}`);
    }
    await send(agent, url, "DELETE", "/api/v1/namespaces/default/configmaps/forge-bench-rtt");
  } finally {
    agent.destroy();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
