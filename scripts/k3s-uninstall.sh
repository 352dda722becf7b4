#!/usr/bin/env bash
# Removes K3s from the node with the uninstall script its installer generated, plus what forge-edge added
# (token, config, the image tarballs it placed, the downloaded installer), so `pulumi destroy` leaves the node
# as it found it. Idempotent; every wait is bounded.
#
# forge:param ROLE  server or agent
set -euo pipefail

: "${ROLE:?}"

STATE_DIR=/var/lib/forge-edge
IMAGES_DIR=/var/lib/rancher/k3s/agent/images
UNINSTALL_TIMEOUT=600

log() { printf 'forge-edge[k3s-uninstall]: %s\n' "$*" >&2; }

script=/usr/local/bin/k3s-uninstall.sh
[ "$ROLE" = agent ] && script=/usr/local/bin/k3s-agent-uninstall.sh
if [ -x "$script" ]; then
  log "running $script"
  timeout "$UNINSTALL_TIMEOUT" "$script" >&2 || {
    log "ERROR: $script failed or did not finish within ${UNINSTALL_TIMEOUT}s"
    exit 1
  }
else
  log "$script not found: K3s is not installed"
fi
# Image tarballs forge-edge placed (K3s's uninstaller removes its data directory; this covers a K3s removed
# some other way).
if [ -e "$STATE_DIR/airgap-images" ]; then
  while IFS= read -r img; do
    [ -n "$img" ] && rm -f "${IMAGES_DIR:?}/$img"
  done <"$STATE_DIR/airgap-images"
  rm -f "$STATE_DIR/airgap-images"
fi
rm -f /etc/rancher/k3s/token /etc/rancher/k3s/config.yaml
rmdir /etc/rancher/k3s /etc/rancher 2>/dev/null || true
rm -f "$STATE_DIR/k3s-install.sh"
rmdir "$STATE_DIR" 2>/dev/null || true
