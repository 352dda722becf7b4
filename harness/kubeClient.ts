/**
 * Kubeconfigs (render and read, certificates embedded) and a tiny HTTPS Kubernetes client with client-cert auth,
 * used by the control plane's readiness checks, the device-plugin and local-path simulators and the tests.
 */
import * as fs from "node:fs";
import * as https from "node:https";

export interface KubeCreds {
  server: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export function renderKubeconfig(c: KubeCreds, user = "admin", cluster = "forge-edge"): string {
  const b64 = (s: string): string => Buffer.from(s).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${cluster}`,
    "  cluster:",
    `    server: ${c.server}`,
    `    certificate-authority-data: ${b64(c.caPem)}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    client-certificate-data: ${b64(c.certPem)}`,
    `    client-key-data: ${b64(c.keyPem)}`,
    "contexts:",
    `- name: ${cluster}`,
    "  context:",
    `    cluster: ${cluster}`,
    `    user: ${user}`,
    `current-context: ${cluster}`,
    "",
  ].join("\n");
}

/** Reads server + embedded CA/client cert/key from a kubeconfig (the form renderKubeconfig and K3s write). */
export function readKubeconfig(file: string): KubeCreds {
  const text = fs.readFileSync(file, "utf8");
  const field = (key: string): string => {
    const m = new RegExp(`^\\s*${key}:\\s*"?([^"\\s]+)"?\\s*$`, "m").exec(text);
    if (!m) throw new Error(`${file}: no ${key}`);
    return m[1];
  };
  const data = (key: string): string => Buffer.from(field(key), "base64").toString("utf8");
  return {
    server: field("server"),
    caPem: data("certificate-authority-data"),
    certPem: data("client-certificate-data"),
    keyPem: data("client-key-data"),
  };
}

export interface KubeResponse {
  status: number;
  body: string;
  json(): unknown;
}

/** Minimal Kubernetes API client over https with client-cert auth. Loopback servers only. */
export class KubeClient {
  private readonly url: URL;
  private readonly agent: https.Agent;

  constructor(readonly creds: KubeCreds) {
    this.url = new URL(creds.server);
    this.agent = new https.Agent({
      ca: creds.caPem,
      cert: creds.certPem,
      key: creds.keyPem,
      keepAlive: false,
    });
  }

  static fromKubeconfig(file: string): KubeClient {
    return new KubeClient(readKubeconfig(file));
  }

  request(
    method: string,
    apiPath: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<KubeResponse> {
    const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.url.hostname,
          port: this.url.port === "" ? 443 : Number(this.url.port),
          method,
          path: apiPath,
          agent: this.agent,
          timeout: 15000,
          headers:
            payload === undefined
              ? {}
              : { "content-type": contentType, "content-length": Buffer.byteLength(payload) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) as unknown });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${apiPath}: timeout`)));
      req.on("error", reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** GET returning parsed JSON, undefined on 404, throwing on other errors. */
  async get(apiPath: string): Promise<unknown> {
    const r = await this.request("GET", apiPath);
    if (r.status === 404) return undefined;
    if (r.status >= 300) throw new Error(`GET ${apiPath}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
    return r.json();
  }

  /** Sends and throws unless 2xx (404 allowed when okIfMissing). */
  async send(
    method: string,
    apiPath: string,
    body?: unknown,
    contentType?: string,
    okIfMissing = false,
  ): Promise<unknown> {
    const r = await this.request(method, apiPath, body, contentType);
    if (okIfMissing && r.status === 404) return undefined;
    if (r.status >= 300) throw new Error(`${method} ${apiPath}: HTTP ${r.status} ${r.body.slice(0, 500)}`);
    return r.body === "" ? undefined : r.json();
  }
}
