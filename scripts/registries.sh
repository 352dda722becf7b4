#!/usr/bin/env bash
# Writes K3s's private registry configuration, /etc/rancher/k3s/registries.yaml (mirrors, and credentials that are
# Pulumi secrets), from stdin: it never appears in a command line, a process list, a log or an error message, and
# nothing this script prints carries any of it. K3s reads the file at start, so a running K3s is restarted when it
# changes (bounded). Removed by registries-remove.sh. Idempotent.
set -euo pipefail

CONF_DIR=/etc/rancher/k3s
FILE="$CONF_DIR/registries.yaml"
MARKER="# managed by forge-edge"
RESTART_TIMEOUT=300

log() { printf 'forge-edge[registries]: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
{
  printf '%s: edit the Pulumi stack (registries), not this file\n' "$MARKER"
  cat
} >"$tmp/registries.yaml"
grep -q '[^[:space:]]' <(tail -n +2 "$tmp/registries.yaml") || die "no registries configuration on stdin"

if [ -e "$FILE" ] && ! grep -q "^$MARKER" "$FILE"; then
  die "$FILE exists and was not written by forge-edge: merge it into the stack's registries config and move it away"
fi
mkdir -p "$CONF_DIR"
if cmp -s "$tmp/registries.yaml" "$FILE"; then
  log "$FILE is up to date"
else
  install -m 0600 "$tmp/registries.yaml" "$FILE"
  log "wrote $FILE"
  for svc in k3s k3s-agent; do
    if systemctl is-active --quiet "$svc"; then
      log "restarting $svc to load the registries"
      timeout "$RESTART_TIMEOUT" systemctl restart "$svc" || die "$svc did not restart within ${RESTART_TIMEOUT}s"
    fi
  done
fi
printf 'registries=%s\n' "$FILE"
