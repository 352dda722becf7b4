/**
 * The tools every section parser shares: where raw values come from, the Checker that collects problems, typed key
 * lists, and the Kubernetes quantity and CIDR parsers.
 */

/** Where raw values come from: `pulumi.Config` in the program, a plain map in tests. */
export interface ConfigSource {
  /** Raw string value as the engine hands it over (objects as JSON), or undefined when unset. */
  get(key: string): string | undefined;
  isSecret(key: string): boolean;
  /**
   * Whether a path names a readable regular file on the machine running pulumi (the air-gap files it copies to the
   * nodes). Absent: such paths are checked for form only (tools that parse a stack without its files).
   */
  isFile?(path: string): boolean;
  /** A file's size and modification time, read with `isFile` (absent, or undefined for a file it cannot stat). */
  fileStat?(path: string): FileStat | undefined;
}

/** What the program knows of a local file it copies to the nodes. */
export interface FileStat {
  readonly bytes: number;
  readonly mtimeMs: number;
}

/** A DNS label: node names, StorageClass names. */
export const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A container image reference. */
export const IMAGE_RE = /^[a-z0-9]+([._/:@-][a-zA-Z0-9_.-]+)*$/;

/** The raw value of a key, objects and lists decoded from the JSON the engine hands over. */
export function readJson(src: ConfigSource, key: string): unknown {
  const raw = src.get(key);
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * The keys of a config object, in the order messages list them. Written as a record so that the compiler refuses a
 * list that misses one of `K` or names a key `K` lacks: `keysOf<keyof InferenceConfig>({ image: true, ... })`.
 */
export function keysOf<K extends string>(keys: Record<K, true>): readonly K[] {
  return Object.keys(keys) as K[];
}

/** One problem with a value: the key, the value as the user typed it, and what is allowed. */
export function invalid(key: string, value: unknown, allowed: string): string {
  // The engine hands scalars over as strings; show numbers and booleans the way the user typed them.
  const shown =
    typeof value === "string" && /^(-?\d+(\.\d+)?|true|false)$/.test(value) ? value : JSON.stringify(value);
  return `${key} = ${shown} is invalid: ${allowed}`;
}

/**
 * Collects problems instead of throwing at the first one, so a user fixes a stack file in one round.
 * Every message names the key, the bad value and what is allowed.
 */
export class Checker {
  readonly problems: string[] = [];

  fail(key: string, value: unknown, allowed: string): void {
    this.problems.push(invalid(key, value, allowed));
  }

  str(key: string, v: unknown, def: string | undefined, re: RegExp, allowed: string): string {
    if (v === undefined || v === null) {
      if (def === undefined) this.problems.push(`${key} is required: ${allowed}`);
      return def ?? "";
    }
    if (typeof v !== "string" || !re.test(v)) {
      this.fail(key, v, allowed);
      return def ?? "";
    }
    return v;
  }

  /** An integer in [min, max]; `note` is added to what is allowed when the value is refused. */
  int(key: string, v: unknown, def: number | undefined, min: number, max: number, note = ""): number {
    return this.number(key, v, def, { min, max, integer: true, note });
  }

  num(key: string, v: unknown, def: number | undefined, min: number, max: number): number {
    return this.number(key, v, def, { min, max, integer: false, note: "" });
  }

  private number(
    key: string,
    v: unknown,
    def: number | undefined,
    r: { min: number; max: number; integer: boolean; note: string },
  ): number {
    const allowed = `${r.integer ? "an integer" : "a number"} from ${r.min} to ${r.max}`;
    if (v === undefined || v === null) {
      if (def === undefined) this.problems.push(`${key} is required: ${allowed}`);
      return def ?? r.min;
    }
    // The engine hands numbers over as strings.
    const n = typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
    const ok =
      typeof n === "number" &&
      (r.integer ? Number.isInteger(n) : Number.isFinite(n)) &&
      n >= r.min &&
      n <= r.max;
    if (!ok) {
      this.fail(key, v, allowed + r.note);
      return def ?? r.min;
    }
    return n;
  }

  bool(key: string, v: unknown, def: boolean): boolean {
    if (v === undefined || v === null) return def;
    if (v === true || v === "true") return true;
    if (v === false || v === "false") return false;
    this.fail(key, v, "true or false");
    return def;
  }

  /** A required name that is a DNS label: node and site names. */
  name(key: string, v: unknown): string {
    return this.str(key, v, undefined, DNS_LABEL_RE, "a DNS label (lower-case letters, digits, '-')");
  }

  memory(key: string, v: unknown, def: string | undefined): string {
    const allowed = 'a positive Kubernetes memory quantity such as "512Mi" or "16Gi"';
    const s = this.str(key, v, def, /^.+$/, allowed);
    if (s && !(parseMemory(s)! > 0)) this.fail(key, v, allowed);
    return s;
  }

  cpu(key: string, v: unknown, def: string | undefined): string {
    const allowed = 'a positive Kubernetes CPU quantity such as "500m" or "2"';
    const s = this.str(key, v, def, /^.+$/, allowed);
    if (s && !(parseCpu(s)! > 0)) this.fail(key, v, allowed);
    return s;
  }

  object(key: string, v: unknown): Record<string, unknown> {
    if (v === undefined || v === null) return {};
    if (typeof v !== "object" || Array.isArray(v)) {
      this.fail(key, v, "an object (set it with `pulumi config set --path`)");
      return {};
    }
    return v as Record<string, unknown>;
  }

  /** `object`, then a problem for every key of it that is not in `known`. */
  section(key: string, v: unknown, known: readonly string[]): Record<string, unknown> {
    const o = this.object(key, v);
    this.unknownKeys(key, o, known);
    return o;
  }

  unknownKeys(key: string, obj: Record<string, unknown>, known: readonly string[]): void {
    for (const k of Object.keys(obj)) if (!known.includes(k)) this.unknownKey(`${key}.${k}`, known);
  }

  unknownKey(key: string, known: readonly string[]): void {
    this.problems.push(`${key} is not a known key: allowed keys are ${known.join(", ")}`);
  }
}

const MEMORY_UNITS: Record<string, number> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** Bytes in a Kubernetes memory quantity, or undefined if it is not one. */
export function parseMemory(q: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) return undefined;
  return Number(m[1]) * MEMORY_UNITS[m[2] ?? ""];
}

/** Millicores in a Kubernetes CPU quantity, or undefined if it is not one. */
export function parseCpu(q: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(m)?$/.exec(q);
  if (!m) return undefined;
  return m[2] ? Number(m[1]) : Number(m[1]) * 1000;
}

/** Validates an IPv4 or IPv6 CIDR. */
export function isCidr(s: string): boolean {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (v4) return v4.slice(1, 5).every((o) => Number(o) <= 255) && Number(v4[5]) <= 32;
  const v6 = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(s);
  return !!v6 && v6[1].includes(":") && Number(v6[2]) <= 128;
}
