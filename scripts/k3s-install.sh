#!/usr/bin/env bash
# Installs (or upgrades in place) K3s on one node as a server or an agent. The cluster token arrives on stdin so
# it never appears in a command line, a process list or an error message; nothing this script prints carries it.
# Idempotent: when the installed version and the rendered config already match, nothing is touched. Every wait is
# bounded. The step fails unless the containerd config K3s rendered really holds the nvidia runtime.
#
# forge:param ROLE          server or agent
# forge:param K3S_VERSION   pinned K3s release, e.g. v1.36.4+k3s1
# forge:param NODE_NAME     Kubernetes node name
# forge:param TLS_SAN       address clients use for the API server (added to its certificate)
# forge:param SERVER_URL    https://<first server>:6443 to join, empty on the first server
# forge:param CLUSTER_INIT  true on the first server of an HA (embedded etcd) cluster
# forge:param NODE_LABELS   comma-separated k=v labels applied at registration
# forge:param DISABLE       comma-separated packaged components to disable (servers)
# forge:param AIRGAP        true: binary, installer and image tarballs were staged in /var/lib/forge-edge/airgap;
#                           false: k3s-fetch.sh downloaded binary and installer into /var/lib/forge-edge/fetch
# forge:param AIRGAP_IMAGES space-separated image tarballs staged in /var/lib/forge-edge/airgap/images, placed in K3s's
#                           images directory before it starts (it imports them before its kubelet starts): K3s's own,
#                           plus the stack's on a K3s without the image watcher (airgap-import.sh places them later)
# forge:param KUBELET_ARGS  kubelet flags (name=value), one per line: the memory kept for the host (system-reserved, eviction-hard)
set -euo pipefail

: "${ROLE:?}" "${K3S_VERSION:?}" "${NODE_NAME:?}" "${TLS_SAN:?}" "${CLUSTER_INIT:?}" "${AIRGAP:?}"
: "${SERVER_URL?}" "${NODE_LABELS?}" "${DISABLE?}" "${AIRGAP_IMAGES?}" "${KUBELET_ARGS?}"

CONF_DIR=/etc/rancher/k3s
STATE_DIR=/var/lib/forge-edge
AIRGAP_DIR="$STATE_DIR/airgap"
FETCH_DIR="$STATE_DIR/fetch"
IMAGES_DIR=/var/lib/rancher/k3s/agent/images
RENDERED=/var/lib/rancher/k3s/agent/etc/containerd/config.toml
# Bounds (seconds) of everything that can wait (FORGE_* overrides exist for the tests only).
INSTALLER_TIMEOUT=${FORGE_INSTALLER_TIMEOUT:-900}
READY_WAIT=${FORGE_READY_WAIT:-240}
RENDER_WAIT=${FORGE_RENDER_WAIT:-60}
SERVICE=k3s
[ "$ROLE" = agent ] && SERVICE=k3s-agent

log() { printf 'forge-edge[k3s-install]: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
# nvidia_rendered: the config.toml K3s rendered defines the nvidia runtime (containerd config version 2 or 3).
nvidia_rendered() {
  grep -Eq "^\[plugins\.['\"]io\.containerd\.(cri\.v1\.runtime|grpc\.v1\.cri)['\"]\.containerd\.runtimes\.['\"]?nvidia['\"]?\]" \
    "$RENDERED" 2>/dev/null
}

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
  if [ -n "$KUBELET_ARGS" ]; then
    printf 'kubelet-arg:\n'
    printf '%s\n' "$KUBELET_ARGS" | sed 's/.*/  - "&"/'
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

# --- air-gap images: into K3s's images directory (imported at start, and by K3s's watcher while it runs) ---------
if [ "$AIRGAP" = true ]; then
  (umask 022 && mkdir -p "$IMAGES_DIR")
  for img in $AIRGAP_IMAGES; do
    case "$img" in */* | .*) die "bad image tarball name '$img'" ;; esac
    [ -s "$AIRGAP_DIR/images/$img" ] || die "air-gap image tarball $AIRGAP_DIR/images/$img is missing"
    if ! cmp -s "$AIRGAP_DIR/images/$img" "$IMAGES_DIR/$img"; then
      install -m 0644 "$AIRGAP_DIR/images/$img" "$IMAGES_DIR/$img"
      log "placed $img in $IMAGES_DIR"
    fi
    grep -qxF "$img" "$STATE_DIR/airgap-images" 2>/dev/null || printf '%s\n' "$img" >>"$STATE_DIR/airgap-images"
  done
fi

# --- install or upgrade --------------------------------------------------------------------------------------
installed=""
if command -v k3s >/dev/null 2>&1; then installed="$(k3s --version | awk 'NR==1 {print $3}')"; fi

if [ "$installed" = "$K3S_VERSION" ] && [ "$changed" = false ] && systemctl is-active --quiet "$SERVICE"; then
  log "K3s $K3S_VERSION ($ROLE) already installed and configured on $NODE_NAME: nothing to do"
else
  # Either way the binary and installer are on the node already: staged by the SSH user in the air gap (SFTP
  # writes as that user), or downloaded by the k3s-fetch step while the toolkit installed. Installed as root.
  # The installer skips the binary download either way; online, it still installs the k3s-selinux RPM where
  # SELinux applies (get.k3s.io: INSTALL_K3S_SKIP_DOWNLOAD=binary skips the binary only, true both).
  if [ "$AIRGAP" = true ]; then
    src="$AIRGAP_DIR" what="air-gap artifact" skip=true
  else
    src="$FETCH_DIR" what="artifact of the k3s-fetch step" skip=binary
    staged="$(cat "$FETCH_DIR/version" 2>/dev/null || true)"
    [ "$staged" = "$K3S_VERSION" ] || die "the k3s-fetch step staged K3s '${staged:-nothing}', not $K3S_VERSION"
  fi
  for f in k3s install.sh; do [ -s "$src/$f" ] || die "$what $src/$f is missing"; done
  install -m 0755 "$src/k3s" /usr/local/bin/k3s
  installer="$src/install.sh"
  log "installing K3s $K3S_VERSION as $ROLE on $NODE_NAME (was: ${installed:-not installed})"
  # The installer only writes the service; starting it is ours, without blocking (K3s's unit is Type=notify with
  # no start timeout, so a blocking start can wait forever) and then polled with a bound below.
  timeout "$INSTALLER_TIMEOUT" env INSTALL_K3S_VERSION="$K3S_VERSION" INSTALL_K3S_EXEC="$ROLE" \
    INSTALL_K3S_SKIP_DOWNLOAD="$skip" INSTALL_K3S_SKIP_START=true \
    K3S_TOKEN_FILE="$CONF_DIR/token" ${SERVER_URL:+K3S_URL="$SERVER_URL"} sh "$installer" >&2 ||
    die "the K3s installer failed or did not finish within ${INSTALLER_TIMEOUT}s"
  restarted_at="$(date +%s)"
  systemctl restart --no-block "$SERVICE"
fi

# --- wait until the node serves -------------------------------------------------------------------------------
serving() {
  if [ "$ROLE" = server ]; then
    timeout 10 k3s kubectl get --raw=/readyz --request-timeout=5s >/dev/null 2>&1
  else
    systemctl is-active --quiet "$SERVICE"
  fi
}
for _ in $(seq 1 $((READY_WAIT / 2))); do
  serving && break
  sleep 2
done
if [ "$ROLE" = server ]; then
  serving || die "the K3s API server on $NODE_NAME did not become ready in ${READY_WAIT}s"
  chmod 0600 "$CONF_DIR/k3s.yaml"
else
  serving || die "$SERVICE on $NODE_NAME is not running after ${READY_WAIT}s"
fi

# --- the nvidia runtime must be in the containerd config K3s rendered at this start -----------------------------
fresh() { [ -z "${restarted_at:-}" ] || [ "$(stat -c %Y "$RENDERED" 2>/dev/null || echo 0)" -ge "$restarted_at" ]; }
for _ in $(seq 1 "$RENDER_WAIT"); do
  fresh && nvidia_rendered && break
  sleep 1
done
if ! { fresh && nvidia_rendered; }; then
  die "$RENDERED on $NODE_NAME has no nvidia runtime after ${RENDER_WAIT}s: K3s did not load the runtime the nvidia-runtime step wired (check the containerd template next to it and 'journalctl -u $SERVICE')"
fi
printf 'k3s=%s role=%s node=%s\n' "$K3S_VERSION" "$ROLE" "$NODE_NAME"
