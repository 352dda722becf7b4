/**
 * Who reaches the inference server: the NodePort and the client CIDRs the NetworkPolicy admits. Both are set for the
 * stack and may be set again per site (`sites[i].nodePort`, `sites[i].allowedCidrs`): the values parsed here are then
 * the defaults each site starts from.
 */
import { Checker, ConfigSource, isCidr, readJson } from "../checker";

export const NODE_PORT_RANGE = { min: 30000, max: 32767 } as const;
const DEFAULT_NODE_PORT = 30080;
const RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

export function parseNodePort(c: Checker, src: ConfigSource): number {
  return nodePortAt(c, "nodePort", src.get("nodePort"), DEFAULT_NODE_PORT);
}

/** A NodePort under `key`; `def` when unset. */
export function nodePortAt(c: Checker, key: string, raw: unknown, def: number): number {
  return c.int(key, raw, def, NODE_PORT_RANGE.min, NODE_PORT_RANGE.max);
}

export function parseAllowedCidrs(c: Checker, src: ConfigSource): string[] {
  return allowedCidrsAt(c, "allowedCidrs", readJson(src, "allowedCidrs"), RFC1918);
}

/** A list of client CIDRs under `key`; `def` when unset (and when the value is refused). */
export function allowedCidrsAt(c: Checker, key: string, raw: unknown, def: readonly string[]): string[] {
  if (raw === undefined || raw === null) return [...def];
  if (!Array.isArray(raw) || raw.length === 0) {
    c.fail(key, raw, 'a non-empty list of CIDRs, e.g. ["192.0.2.0/24"]');
    return [...def];
  }
  raw.forEach((v, i) => {
    if (typeof v !== "string" || !isCidr(v))
      c.fail(`${key}[${i}]`, v, 'an IPv4/IPv6 CIDR such as "192.0.2.0/24"');
  });
  return raw.map(String);
}
