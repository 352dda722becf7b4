#!/usr/bin/env bash
# Undoes nvidia-runtime.sh: removes our containerd template and state, removes the toolkit only if forge-edge
# installed it, and restarts K3s if it still runs. Idempotent.
set -euo pipefail

STATE_DIR=/var/lib/forge-edge
TMPL=/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl

log() { printf 'forge-edge[nvidia-runtime-revert]: %s\n' "$*" >&2; }

changed=false
if [ -e "$TMPL" ] && grep -q '^# managed by forge-edge' "$TMPL"; then
  rm -f "$TMPL"
  changed=true
  log "removed $TMPL"
fi
if [ -e "$STATE_DIR/toolkit-installed-by-forge" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq nvidia-container-toolkit nvidia-container-toolkit-base \
    libnvidia-container-tools libnvidia-container1
  rm -f /etc/apt/sources.list.d/nvidia-container-toolkit.list /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  rm -f "$STATE_DIR/toolkit-installed-by-forge"
  log "removed the toolkit packages forge-edge installed"
fi
rm -f "$STATE_DIR/runtime.env"
rmdir "$STATE_DIR" 2>/dev/null || true
# Directories we created for the template, when K3s (which owns them otherwise) is not installed.
for d in /var/lib/rancher/k3s/agent/etc/containerd /var/lib/rancher/k3s/agent/etc /var/lib/rancher/k3s/agent /var/lib/rancher/k3s; do
  rmdir "$d" 2>/dev/null || break
done
if [ "$changed" = true ]; then
  for svc in k3s k3s-agent; do
    if systemctl is-active --quiet "$svc"; then systemctl restart "$svc"; fi
  done
fi
