/**
 * SSH host key pins (`nodes[i].hostKey`). The K3s token and the admin kubeconfig travel over these connections, so a
 * node is dialled only with its host key pinned, unless a lab stack opts out with `insecureSkipHostKeyCheck: true`.
 *
 * Which key types can be pinned is decided by the real provider: pulumi-command v1.2.1
 * (provider/pkg/provider/remote/connection.go, `SSHConfig`) parses the pin with `ssh.ParseAuthorizedKey` and offers
 * exactly `HostKeyAlgorithms: []string{publicKey.Type()}`. For an RSA key that is `ssh-rsa`, the SHA-1 signature
 * algorithm, which OpenSSH 8.8 and newer no longer accept by default: the handshake fails with "no common algorithm
 * for host key". ed25519 and ECDSA keys name their one algorithm, so those pins work.
 */

/** Key types a node may be pinned with, in the order `pin-host-keys` prefers them. */
export const PINNABLE_KEY_TYPES = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
] as const;
export type PinnableKeyType = (typeof PINNABLE_KEY_TYPES)[number];

/**
 * The pin the committed stack files carry until `npm run pin-host-keys` replaces it: a well-formed ed25519 key whose
 * 32 key bytes spell "forge-edge placeholder: pin me!!". No host has it, so a stack that still carries it fails the
 * host key check instead of trusting whatever answers.
 */
export const PLACEHOLDER_HOST_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZvcmdlLWVkZ2UgcGxhY2Vob2xkZXI6IHBpbiBtZSEh forge-edge-placeholder";

export interface ParsedHostKey {
  readonly type: PinnableKeyType;
  /** base64 of the key blob */
  readonly key: string;
  /** `type key`, without a comment: what goes into known_hosts and the provider. */
  readonly line: string;
}

export type HostKeyResult = { ok: true; value: ParsedHostKey } | { ok: false; rsa: boolean; reason: string };

const RSA_REASON =
  'an RSA host key cannot be pinned: pulumi-command 1.2.1 offers only the SHA-1 `ssh-rsa` algorithm for an RSA pin, which OpenSSH 8.8+ refuses ("no common algorithm for host key"); pin the node\'s ed25519 or ECDSA key instead: `ssh-keyscan -t ed25519 <host>` or `npm run pin-host-keys`';

/** Reads one SSH string (uint32 length + bytes) at `off`, or undefined past the end. */
function sshString(buf: Buffer, off: number): { value: Buffer; next: number } | undefined {
  if (off + 4 > buf.length) return undefined;
  const len = buf.readUInt32BE(off);
  if (off + 4 + len > buf.length) return undefined;
  return { value: buf.subarray(off + 4, off + 4 + len), next: off + 4 + len };
}

/** Checks an authorized_keys-format host key line (`type base64 [comment]`) the way the provider will use it. */
export function parseHostKey(line: string): HostKeyResult {
  const allowed = `an authorized_keys line of type ${PINNABLE_KEY_TYPES.join(", ")}, e.g. "ssh-ed25519 AAAA..."`;
  const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})( .*)?$/.exec(line.trim());
  if (!m) return { ok: false, rsa: false, reason: allowed };
  const [, type, key] = m;
  if (type === "ssh-rsa" || type.startsWith("rsa-sha2-")) return { ok: false, rsa: true, reason: RSA_REASON };
  if (!(PINNABLE_KEY_TYPES as readonly string[]).includes(type))
    return { ok: false, rsa: false, reason: allowed };
  const blob = Buffer.from(key, "base64");
  const inner = sshString(blob, 0);
  const keyType = inner?.value.toString("latin1");
  let ok = inner !== undefined && keyType === type;
  if (ok && type === "ssh-ed25519") {
    const pk = sshString(blob, inner!.next);
    ok = pk !== undefined && pk.value.length === 32 && pk.next === blob.length;
  } else if (ok) {
    const curve = sshString(blob, inner!.next);
    const point = curve && sshString(blob, curve.next);
    ok = curve?.value.toString("latin1") === type.replace("ecdsa-sha2-", "") && point?.next === blob.length;
  }
  if (!ok) {
    return {
      ok: false,
      rsa: false,
      reason: `the key data does not decode to a ${type} key (truncated or mangled when pasted?); ${allowed}`,
    };
  }
  return { ok: true, value: { type: type as PinnableKeyType, key, line: `${type} ${key}` } };
}

export function isPlaceholderHostKey(line: string | undefined): boolean {
  return line !== undefined && line.split(" ")[1] === PLACEHOLDER_HOST_KEY.split(" ")[1];
}
