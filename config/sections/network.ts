/** Who reaches the inference server: the NodePort and the client CIDRs the NetworkPolicy admits. */
import { Checker, ConfigSource, isCidr, readJson } from "../checker";

export const NODE_PORT_RANGE = { min: 30000, max: 32767 } as const;
const RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

export function parseNodePort(c: Checker, src: ConfigSource): number {
  return c.int("nodePort", src.get("nodePort"), 30080, NODE_PORT_RANGE.min, NODE_PORT_RANGE.max);
}

export function parseAllowedCidrs(c: Checker, src: ConfigSource): string[] {
  const raw = readJson(src, "allowedCidrs");
  if (raw === undefined) return [...RFC1918];
  if (!Array.isArray(raw) || raw.length === 0) {
    c.fail("allowedCidrs", raw, 'a non-empty list of CIDRs, e.g. ["192.0.2.0/24"]');
    return [...RFC1918];
  }
  raw.forEach((v, i) => {
    if (typeof v !== "string" || !isCidr(v))
      c.fail(`allowedCidrs[${i}]`, v, 'an IPv4/IPv6 CIDR such as "192.0.2.0/24"');
  });
  return raw.map(String);
}
