#!/usr/bin/env bash
# Test double of K3s' k3s-uninstall.sh / k3s-agent-uninstall.sh (one file, role from its name):
# stops the k3s double, deletes its Node object, removes what the install and k3s doubles created
# (/etc/rancher/k3s, /var/lib/rancher/k3s, binaries and scripts in /usr/local/bin; with a real node also
# /var/lib/kubelet and /run/k3s), leaving the host as before the install.
set -euo pipefail
# shellcheck source=/dev/null
. "${FORGE_HARNESS_DIR:-/opt/forge-harness}/doubles/lib.sh"
self=$(basename "$0")
log_call "$self" "$@"
if [[ $self == k3s-agent-uninstall.sh ]]; then svc=k3s-agent role=agent; else svc=k3s role=server; fi
BIN_DIR=/usr/local/bin

if [[ -x $BIN_DIR/k3s-killall.sh ]]; then "$BIN_DIR/k3s-killall.sh"; fi

node_file=$SYSTEMD_STATE/k3s-$role.node-name
if [[ -r $node_file ]]; then
  node=$(<"$node_file")
  if [[ -n ${FORGE_KUBECTL:-} && -n $node ]]; then
    kube delete node "$node" --ignore-not-found --wait=false >/dev/null
  fi
  rm -f "$node_file"
fi
if [[ $role == server && -r /var/lib/rancher/k3s/server/token && -n ${FORGE_SHARED:-} ]]; then
  rm -f "$FORGE_SHARED/k3s-tokens/$FORGE_HOST_IP"
fi
rm -f "$SYSTEMD_STATE/$svc".{active,enabled,unit,env,journal} "$SYSTEMD_STATE/k3s.forwarder.log"
rm -f "/etc/systemd/system/$svc.service.env" # as get.k3s.io's uninstall: rm -f ${FILE_K3S_ENV}

rm -rf /etc/rancher/k3s /var/lib/rancher/k3s
if [[ ${FORGE_NODE_MODE:-kwok} == kubelet ]]; then
  # K3s's uninstall also removes /var/lib/kubelet and /run/k3s; on a simulated host both are private mounts, so
  # their contents go.
  find /var/lib/kubelet /run/k3s -mindepth 1 -delete
fi
if [[ -L $BIN_DIR/kubectl && $(readlink "$BIN_DIR/kubectl") == k3s ]]; then rm -f "$BIN_DIR/kubectl"; fi
rm -f "$BIN_DIR/k3s" "$BIN_DIR/k3s-killall.sh" "$BIN_DIR/$self"
