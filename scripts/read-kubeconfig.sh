#!/usr/bin/env bash
# Prints the K3s admin kubeconfig. Its output is cluster-admin credentials: the Pulumi resource running this keeps
# stdout secret and never logs it. Because a failed command's whole output lands in the error message (even with
# logging off), the file is read and checked completely first, and printed by the very last command: nothing can
# fail after a credential has been written, and no failure path prints any of it.
set -euo pipefail

KUBECONFIG_FILE=/etc/rancher/k3s/k3s.yaml

fail() {
  printf 'forge-edge[read-kubeconfig]: ERROR: %s\n' "$*" >&2
  exit 1
}

[ -s "$KUBECONFIG_FILE" ] || fail "$KUBECONFIG_FILE not found: is this a K3s server?"
kubeconfig="$(cat "$KUBECONFIG_FILE" 2>/dev/null)" || fail "$KUBECONFIG_FILE could not be read"
# A kubeconfig K3s is still writing, or one that lost its credentials, is refused without showing it.
for field in 'server: https://' 'certificate-authority-data:' 'client-certificate-data:' 'client-key-data:'; do
  grep -qF -- "$field" <<<"$kubeconfig" || fail "$KUBECONFIG_FILE is incomplete (no ${field%%:*}): retry once K3s has written it"
done
printf '%s\n' "$kubeconfig"
