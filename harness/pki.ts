/** The test cluster's PKI, made with the `openssl` CLI (EC P-256 keys: fast to generate, accepted by every component). */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function ecKey(file: string, cwd: string): void {
  openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file], cwd);
}

function signedCert(
  cwd: string,
  base: string,
  subject: string,
  ext: string[],
): { certPem: string; keyPem: string; certFile: string; keyFile: string } {
  ecKey(`${base}.key`, cwd);
  openssl(["req", "-new", "-key", `${base}.key`, "-subj", subject, "-out", `${base}.csr`], cwd);
  fs.writeFileSync(path.join(cwd, `${base}.ext`), ext.join("\n") + "\n");
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${base}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "30",
      "-sha256",
      "-extfile",
      `${base}.ext`,
      "-out",
      `${base}.crt`,
    ],
    cwd,
  );
  return {
    certPem: fs.readFileSync(path.join(cwd, `${base}.crt`), "utf8"),
    keyPem: fs.readFileSync(path.join(cwd, `${base}.key`), "utf8"),
    certFile: path.join(cwd, `${base}.crt`),
    keyFile: path.join(cwd, `${base}.key`),
  };
}

export interface Pki {
  caFile: string;
  caKeyFile: string;
  caPem: string;
  apiserver: { certFile: string; keyFile: string };
  /** The apiserver's client certificate towards kubelets (logs, exec): user kube-apiserver, as K3s's. */
  kubeletClient: { certFile: string; keyFile: string };
  admin: { certPem: string; keyPem: string };
  controllerManager: { certPem: string; keyPem: string };
  scheduler: { certPem: string; keyPem: string };
  saKeyFile: string;
  saPubFile: string;
}

/** CA, apiserver serving cert (IP SANs 127.0.0.1, 10.43.0.1, hostIps), client certs, SA key pair. */
export function makePki(dir: string, hostIps: string[]): Pki {
  fs.mkdirSync(dir, { recursive: true });
  ecKey("ca.key", dir);
  openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "ca.key",
      "-subj",
      "/CN=forge-edge-test-ca",
      "-days",
      "30",
      "-sha256",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
      "-out",
      "ca.crt",
    ],
    dir,
  );
  const ips = [...new Set(["127.0.0.1", "10.43.0.1", ...hostIps])];
  for (const ip of ips) if (net.isIP(ip) === 0) throw new Error(`hostIps: ${ip} is not an IP address`);
  const dns = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
  ];
  const san = [...ips.map((i) => `IP:${i}`), ...dns.map((d) => `DNS:${d}`)].join(",");
  const serverExt = [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    `subjectAltName=${san}`,
  ];
  const clientExt = [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=clientAuth",
  ];
  const apiserver = signedCert(dir, "apiserver", "/CN=kube-apiserver", serverExt);
  const kubeletClient = signedCert(dir, "apiserver-kubelet-client", "/CN=kube-apiserver", clientExt);
  const admin = signedCert(dir, "admin", "/O=system:masters/CN=kubernetes-admin", clientExt);
  const cm = signedCert(dir, "controller-manager", "/CN=system:kube-controller-manager", clientExt);
  const sched = signedCert(dir, "scheduler", "/CN=system:kube-scheduler", clientExt);
  ecKey("sa.key", dir);
  openssl(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
  return {
    caFile: path.join(dir, "ca.crt"),
    caKeyFile: path.join(dir, "ca.key"),
    caPem: fs.readFileSync(path.join(dir, "ca.crt"), "utf8"),
    apiserver: { certFile: apiserver.certFile, keyFile: apiserver.keyFile },
    kubeletClient: { certFile: kubeletClient.certFile, keyFile: kubeletClient.keyFile },
    admin: { certPem: admin.certPem, keyPem: admin.keyPem },
    controllerManager: { certPem: cm.certPem, keyPem: cm.keyPem },
    scheduler: { certPem: sched.certPem, keyPem: sched.keyPem },
    saKeyFile: path.join(dir, "sa.key"),
    saPubFile: path.join(dir, "sa.pub"),
  };
}
