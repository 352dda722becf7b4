#!/usr/bin/env bash
# Runs on the first server when a node leaves the stack: drains it (honouring PodDisruptionBudgets) and deletes
# its Node object, so the node's own uninstall that follows leaves no stale node behind. Idempotent: a node that
# is already gone is fine.
#
# forge:param NODE_NAME      the node leaving the cluster
# forge:param DRAIN_TIMEOUT  seconds to wait for evictions before giving up (the removal then fails and can be retried)
set -euo pipefail

: "${NODE_NAME:?}" "${DRAIN_TIMEOUT:?}"

log() { printf 'forge-edge[drain-node]: %s\n' "$*" >&2; }

if ! k3s kubectl get node "$NODE_NAME" >/dev/null 2>&1; then
  log "node $NODE_NAME is not in the cluster: nothing to drain"
  exit 0
fi
log "draining $NODE_NAME"
k3s kubectl drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --timeout="${DRAIN_TIMEOUT}s"
k3s kubectl delete node "$NODE_NAME" --wait=true
log "node $NODE_NAME removed from the cluster"
