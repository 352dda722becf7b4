#!/usr/bin/env bash
# Runs on the first server when a node leaves the stack: drains it (honouring PodDisruptionBudgets) and deletes
# its Node object, so the node's own uninstall that follows leaves no stale node behind. Idempotent: a node that
# is already gone is fine. Every wait is bounded: DRAIN_TIMEOUT for the evictions, fixed bounds for the rest.
#
# Pods no controller owns (a bare `kubectl run` pod such as the design's `gpu-test`) are deleted (`--force`):
# the node is leaving, so such a pod dies with it whatever the drain does; refusing would only block the
# removal on every retry. Their names are logged first, so what went is on record.
#
# forge:param NODE_NAME      the node leaving the cluster
# forge:param DRAIN_TIMEOUT  seconds to wait for evictions before giving up (the removal then fails and can be retried)
set -euo pipefail

: "${NODE_NAME:?}" "${DRAIN_TIMEOUT:?}"

log() { printf 'forge-edge[drain-node]: %s\n' "$*" >&2; }
kc() { timeout 60 k3s kubectl --request-timeout=30s "$@"; }

if ! out="$(kc get node "$NODE_NAME" -o name 2>&1)"; then
  case "$out" in
    *NotFound* | *"not found"*)
      log "node $NODE_NAME is not in the cluster: nothing to drain"
      exit 0
      ;;
    *)
      log "ERROR: cannot reach the API server to drain $NODE_NAME: $out"
      exit 1
      ;;
  esac
fi

# Bare pods on the node: no ownerReferences (mirror pods are owned by their Node, and drain skips them).
bare="$(kc get pods -A --field-selector "spec.nodeName=$NODE_NAME" --no-headers \
  -o custom-columns='NS:.metadata.namespace,NAME:.metadata.name,OWNER:.metadata.ownerReferences[0].kind' |
  awk '$3 == "<none>" {print $1 "/" $2}')" || bare=""
if [ -n "$bare" ]; then
  log "deleting pods no controller will recreate (the node is leaving): $(tr '\n' ' ' <<<"$bare")"
fi

log "draining $NODE_NAME (timeout ${DRAIN_TIMEOUT}s)"
timeout $((DRAIN_TIMEOUT + 60)) k3s kubectl drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
  --timeout="${DRAIN_TIMEOUT}s" ||
  {
    log "ERROR: $NODE_NAME did not drain within ${DRAIN_TIMEOUT}s: a PodDisruptionBudget blocks an eviction (scale the workload up, or raise rollout.drainTimeoutSeconds) and retry"
    exit 1
  }
kc delete node "$NODE_NAME" --ignore-not-found --wait=true --timeout=60s
log "node $NODE_NAME removed from the cluster"
