#!/usr/bin/env bash
# Test double of K3s' k3s-killall.sh (written by the install.sh double): stops the "k3s process"
# (the apiserver forwarder; with a real node, k3s-node.sh stop: kubelet, containers, containerd, their mounts)
# and marks k3s / k3s-agent inactive.
set -euo pipefail
# shellcheck source=/dev/null
. "${FORGE_HARNESS_DIR:-/opt/forge-harness}/doubles/lib.sh"
log_call k3s-killall.sh "$@"
for svc in k3s k3s-agent; do
  if [[ -x /usr/local/bin/k3s ]]; then /usr/local/bin/k3s __double-stop "$svc" >/dev/null 2>&1 || true; fi
  if [[ -e $SYSTEMD_STATE/$svc.active ]]; then echo inactive >"$SYSTEMD_STATE/$svc.active"; fi
done
