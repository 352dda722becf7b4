#!/usr/bin/env bash
# Runs on a fleet site's first server once the site's nodes are bootstrapped and its inference Deployment is
# declared: the site's health gate, which the next site wave waits for. It succeeds when the Deployment has rolled
# out (every replica updated and available, i.e. passing its readiness probe on /health/ready) and fails after
# TIMEOUT seconds otherwise. The program re-runs it whenever one of the site's node steps changes (a K3s upgrade
# restarts the pods), so a later wave never starts on the strength of a check made before such a change.
#
# forge:param NAMESPACE   the inference namespace
# forge:param DEPLOYMENT  the inference Deployment
# forge:param TIMEOUT     seconds to wait for the rollout before failing
set -euo pipefail

: "${NAMESPACE:?}" "${DEPLOYMENT:?}" "${TIMEOUT:?}"

log() { printf 'forge-edge[site-health]: %s\n' "$*" >&2; }

log "waiting up to ${TIMEOUT}s for deployment/$DEPLOYMENT in $NAMESPACE to be fully available"
if ! timeout "$((TIMEOUT + 30))" k3s kubectl --request-timeout=30s -n "$NAMESPACE" \
  rollout status "deployment/$DEPLOYMENT" --timeout="${TIMEOUT}s" >&2; then
  log "ERROR: deployment/$DEPLOYMENT is not fully available: the next site wave does not start"
  exit 1
fi
ready="$(k3s kubectl --request-timeout=30s -n "$NAMESPACE" get "deployment/$DEPLOYMENT" \
  -o 'jsonpath={.status.availableReplicas}/{.spec.replicas}')"
log "healthy: $ready replicas available"
echo "healthy ${ready}"
