#!/usr/bin/env bash
# Undoes registries.sh: removes /etc/rancher/k3s/registries.yaml if forge-edge wrote it, and restarts a running
# K3s so it forgets the mirrors (bounded). Idempotent.
set -euo pipefail

FILE=/etc/rancher/k3s/registries.yaml
RESTART_TIMEOUT=300

if [ -e "$FILE" ] && grep -q '^# managed by forge-edge' "$FILE"; then
  rm -f "$FILE"
  rmdir /etc/rancher/k3s /etc/rancher 2>/dev/null || true
  for svc in k3s k3s-agent; do
    if systemctl is-active --quiet "$svc"; then
      timeout "$RESTART_TIMEOUT" systemctl restart "$svc" ||
        printf 'forge-edge[registries-remove]: WARNING: %s did not restart within %ss\n' "$svc" "$RESTART_TIMEOUT" >&2
    fi
  done
fi
