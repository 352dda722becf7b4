#!/usr/bin/env bash
# Installs (or upgrades in place) K3s on one node as a server or an agent. The cluster token arrives on stdin so
# it never appears in a command line, a process list or an error message. Idempotent: when the installed version
# and the rendered config already match, nothing is touched.
#
# forge:param ROLE          server or agent
# forge:param K3S_VERSION   pinned K3s release, e.g. v1.36.4+k3s1
# forge:param NODE_NAME     Kubernetes node name
# forge:param TLS_SAN       address clients use for the API server (added to its certificate)
# forge:param SERVER_URL    https://<first server>:6443 to join, empty on the first server
# forge:param CLUSTER_INIT  true on the first server of an HA (embedded etcd) cluster
# forge:param NODE_LABELS   comma-separated k=v labels applied at registration
# forge:param DISABLE       comma-separated packaged components to disable (servers)
# forge:param AIRGAP        true: binary, installer and images were copied to /var/lib/forge-edge/airgap
# forge:param INSTALL_URL   installer URL when not air-gapped
set -euo pipefail

: "${ROLE:?}" "${K3S_VERSION:?}" "${NODE_NAME:?}" "${TLS_SAN:?}" "${CLUSTER_INIT:?}" "${AIRGAP:?}" "${INSTALL_URL:?}"
: "${SERVER_URL?}" "${NODE_LABELS?}" "${DISABLE?}"

CONF_DIR=/etc/rancher/k3s
STATE_DIR=/var/lib/forge-edge
AIRGAP_DIR="$STATE_DIR/airgap"
SERVICE=k3s
[ "$ROLE" = agent ] && SERVICE=k3s-agent

log() { printf 'forge-edge[k3s-install]: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$ROLE" in server | agent) ;; *) die "ROLE must be server or agent, got '$ROLE'" ;; esac
if [ "$ROLE" = agent ] && [ -z "$SERVER_URL" ]; then die "an agent needs SERVER_URL"; fi

IFS= read -r token || true
[ -n "${token:-}" ] || die "no cluster token on stdin"

umask 077
mkdir -p "$CONF_DIR" "$STATE_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- config: token file and config.yaml, rewritten only when they differ --------------------------------------
changed=false
printf '%s\n' "$token" >"$tmp/token"
if ! cmp -s "$tmp/token" "$CONF_DIR/token"; then
  install -m 0600 "$tmp/token" "$CONF_DIR/token"
  changed=true
fi

{
  printf '# managed by forge-edge: edit the Pulumi stack, not this file\n'
  printf 'node-name: "%s"\n' "$NODE_NAME"
  printf 'token-file: "%s"\n' "$CONF_DIR/token"
  [ -n "$SERVER_URL" ] && printf 'server: "%s"\n' "$SERVER_URL"
  if [ -n "$NODE_LABELS" ]; then
    printf 'node-label:\n'
    tr ',' '\n' <<<"$NODE_LABELS" | sed 's/.*/  - "&"/'
  fi
  if [ "$ROLE" = server ]; then
    # The kubeconfig holds cluster-admin credentials: root only.
    printf 'write-kubeconfig-mode: "0600"\n'
    printf 'tls-san:\n  - "%s"\n' "$TLS_SAN"
    [ "$CLUSTER_INIT" = true ] && printf 'cluster-init: true\n'
    if [ -n "$DISABLE" ]; then
      printf 'disable:\n'
      tr ',' '\n' <<<"$DISABLE" | sed 's/.*/  - "&"/'
    fi
  fi
} >"$tmp/config.yaml"
if ! cmp -s "$tmp/config.yaml" "$CONF_DIR/config.yaml"; then
  install -m 0600 "$tmp/config.yaml" "$CONF_DIR/config.yaml"
  changed=true
fi

# --- install or upgrade --------------------------------------------------------------------------------------
installed=""
if command -v k3s >/dev/null 2>&1; then installed="$(k3s --version | awk 'NR==1 {print $3}')"; fi

if [ "$installed" = "$K3S_VERSION" ] && [ "$changed" = false ] && systemctl is-active --quiet "$SERVICE"; then
  log "K3s $K3S_VERSION ($ROLE) already installed and configured on $NODE_NAME: nothing to do"
else
  if [ "$AIRGAP" = true ]; then
    for f in k3s install.sh; do [ -s "$AIRGAP_DIR/$f" ] || die "air-gap artifact $AIRGAP_DIR/$f is missing"; done
    install -m 0755 "$AIRGAP_DIR/k3s" /usr/local/bin/k3s
    if compgen -G "$AIRGAP_DIR/k3s-airgap-images*" >/dev/null; then
      mkdir -p /var/lib/rancher/k3s/agent/images
      cp -f "$AIRGAP_DIR"/k3s-airgap-images* /var/lib/rancher/k3s/agent/images/
    fi
    installer="$AIRGAP_DIR/install.sh"
  else
    installer="$STATE_DIR/k3s-install.sh"
    curl -sfL "$INSTALL_URL" -o "$installer"
  fi
  log "installing K3s $K3S_VERSION as $ROLE on $NODE_NAME (was: ${installed:-not installed})"
  env INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_EXEC="$ROLE" INSTALL_K3S_SKIP_DOWNLOAD="$AIRGAP" \
    K3S_TOKEN_FILE="$CONF_DIR/token" ${SERVER_URL:+K3S_URL="$SERVER_URL"} sh "$installer"
  # The installer leaves a running service on a fresh install but not always a restarted one on a config change.
  systemctl restart "$SERVICE"
fi

# --- wait until the node serves -------------------------------------------------------------------------------
for _ in $(seq 1 120); do
  if [ "$ROLE" = server ]; then
    k3s kubectl get --raw=/readyz >/dev/null 2>&1 && break
  else
    systemctl is-active --quiet "$SERVICE" && break
  fi
  sleep 2
done
if [ "$ROLE" = server ]; then
  k3s kubectl get --raw=/readyz >/dev/null 2>&1 || die "the K3s API server on $NODE_NAME did not become ready in 240s"
  chmod 0600 "$CONF_DIR/k3s.yaml"
else
  systemctl is-active --quiet "$SERVICE" || die "$SERVICE on $NODE_NAME is not running"
fi
printf 'k3s=%s role=%s node=%s\n' "$K3S_VERSION" "$ROLE" "$NODE_NAME"
