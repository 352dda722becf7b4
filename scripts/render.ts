/**
 * Renders the node scripts in this folder into remote commands. A script declares its parameters in
 * `# forge:param NAME description` header lines; rendering demands exactly that set, shell-quotes every value and
 * prepends the assignments, so no script text is ever assembled from fragments.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";

export type ScriptName =
  | "nvidia-runtime"
  | "nvidia-runtime-revert"
  | "k3s-install"
  | "k3s-uninstall"
  | "read-kubeconfig"
  | "drain-node"
  | "site-health"
  | "airgap-stage"
  | "airgap-unstage"
  | "registries"
  | "registries-remove"
  | "preflight"
  | "k3s-fetch"
  | "k3s-fetch-remove"
  | "image-prepull"
  | "image-prepull-remove"
  | "airgap-import"
  | "airgap-import-remove";

export type ScriptParams = Readonly<Record<string, string | number | boolean>>;

const PARAM_RE = /^# forge:param ([A-Z][A-Z0-9_]*)\b/;

export function scriptPath(name: ScriptName): string {
  return path.join(__dirname, `${name}.sh`);
}

/** The parameter names a script declares, in declaration order. */
export function declaredParams(source: string): string[] {
  return source
    .split("\n")
    .map((l) => PARAM_RE.exec(l)?.[1])
    .filter((p): p is string => p !== undefined);
}

/** POSIX single-quote quoting: safe for any byte sequence except NUL. */
export function shellQuote(value: string): string {
  if (value.includes("\0")) throw new Error("shell values cannot contain NUL");
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** The script text with its parameters bound: what runs on the node. */
export function renderScript(name: ScriptName, params: ScriptParams = {}): string {
  const source = readFileSync(scriptPath(name), "utf8");
  const declared = declaredParams(source);
  const given = Object.keys(params);
  const missing = declared.filter((p) => !given.includes(p));
  const extra = given.filter((p) => !declared.includes(p));
  if (missing.length || extra.length) {
    throw new Error(
      `script ${name}.sh: ` +
        [
          missing.length ? `missing parameter(s) ${missing.join(", ")}` : "",
          extra.length ? `undeclared parameter(s) ${extra.join(", ")}` : "",
        ]
          .filter(Boolean)
          .join("; "),
    );
  }
  const body = source.replace(/^#!.*\n/, "");
  const assignments = declared.map((p) => `${p}=${shellQuote(String(params[p]))}`).join("\n");
  return `# forge-edge ${name}.sh sha256:${sha256(source).slice(0, 16)}\n${assignments}${assignments ? "\n" : ""}${body}`;
}

const HEREDOC_END = "FORGE_EDGE_SCRIPT_END";

/**
 * The command line that runs a rendered script on the node as root. The script travels inside the command (not
 * via `environment`, which sshd drops without AcceptEnv) as a quoted here-document, so it stays verbatim and
 * readable in `pulumi preview --diff`, and stdin stays free for secrets.
 */
export function remoteCommand(name: ScriptName, params: ScriptParams, user: string): string {
  const script = renderScript(name, params);
  if (script.split("\n").includes(HEREDOC_END))
    throw new Error(`script ${name}.sh contains the line ${HEREDOC_END}`);
  const sudo = user === "root" ? "" : "sudo -n ";
  return `${sudo}bash -c "$(cat <<'${HEREDOC_END}'\n${script}\n${HEREDOC_END}\n)" forge-${name}`;
}
