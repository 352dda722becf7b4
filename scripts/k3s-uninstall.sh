#!/usr/bin/env bash
# Removes K3s from the node with the uninstall script its installer generated, plus what forge-edge added
# (token, config, air-gap artifacts), so `pulumi destroy` leaves the node as it found it. Idempotent.
#
# forge:param ROLE  server or agent
set -euo pipefail

: "${ROLE:?}"

log() { printf 'forge-edge[k3s-uninstall]: %s\n' "$*" >&2; }

script=/usr/local/bin/k3s-uninstall.sh
[ "$ROLE" = agent ] && script=/usr/local/bin/k3s-agent-uninstall.sh
if [ -x "$script" ]; then
  log "running $script"
  "$script"
else
  log "$script not found: K3s is not installed"
fi
rm -f /etc/rancher/k3s/token /etc/rancher/k3s/config.yaml
rmdir /etc/rancher/k3s /etc/rancher 2>/dev/null || true
rm -rf /var/lib/forge-edge/airgap /var/lib/forge-edge/k3s-install.sh
rmdir /var/lib/forge-edge 2>/dev/null || true
