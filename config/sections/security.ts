/**
 * Access to the nodes: the SSH private key (a Pulumi secret) and the host key pins. The K3s token and the admin
 * kubeconfig travel over these connections, so every node's host key is pinned unless a lab stack opts out.
 */
import { Checker, ConfigSource, readJson } from "../checker";
import { parseHostKey } from "../hostKeys";

/** `sshPrivateKey` (checked, never read: `config/pulumi.ts` takes it as a secret) and `insecureSkipHostKeyCheck`. */
export function parseSecurity(c: Checker, src: ConfigSource): { insecureSkipHostKeyCheck: boolean } {
  if (src.get("sshPrivateKey") === undefined) {
    c.problems.push(
      "sshPrivateKey is required: set it with `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`",
    );
  } else if (!src.isSecret("sshPrivateKey")) {
    c.problems.push(
      "sshPrivateKey is stored in plaintext: re-set it with `pulumi config set --secret sshPrivateKey < key`",
    );
  }
  return {
    insecureSkipHostKeyCheck: c.bool(
      "insecureSkipHostKeyCheck",
      readJson(src, "insecureSkipHostKeyCheck"),
      false,
    ),
  };
}

/** What decides whether a node without a pin is refused, and the stack named in the fix. */
export interface PinPolicy {
  readonly stack: string;
  readonly insecureSkipHostKeyCheck: boolean;
}

/** `nodes[i].hostKey`: the pin as `type base64`, or undefined where the stack opts out of pinning. */
export function parseHostKeyPin(c: Checker, key: string, raw: unknown, ctx: PinPolicy): string | undefined {
  if (raw === undefined || raw === null) {
    if (!ctx.insecureSkipHostKeyCheck) {
      c.problems.push(
        `${key} is required: the K3s token and the admin kubeconfig travel over this SSH connection, so the node's host key must be pinned (ssh-ed25519 or ecdsa-sha2-nistp*); ` +
          `run \`npm run pin-host-keys -- --stack ${ctx.stack}\` to fill every node's pin from ssh-keyscan, or set insecureSkipHostKeyCheck: true on a lab stack`,
      );
    }
    return undefined;
  }
  const parsed = typeof raw === "string" ? parseHostKey(raw) : undefined;
  if (parsed?.ok) return parsed.value.line;
  c.fail(key, shortKey(raw), parsed?.reason ?? 'an authorized_keys line, "ssh-ed25519 AAAA..."');
  return undefined;
}

/** The value as shown in a message: long host keys are cut, they only need to be recognisable. */
function shortKey(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 36)}...` : s;
}
