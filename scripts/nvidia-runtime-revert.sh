#!/usr/bin/env bash
# Undoes nvidia-runtime.sh, exactly: removes the containerd templates it wrote (either schema, only files carrying
# its marker), its state files and the directories it created; removes the toolkit packages and apt source files
# only if forge-edge put them there; restarts K3s if it still runs. Idempotent; every wait is bounded.
set -euo pipefail

STATE_DIR=/var/lib/forge-edge
TMPL_DIR=/var/lib/rancher/k3s/agent/etc/containerd
MARKER="# managed by forge-edge"
APT_TIMEOUT=900
RESTART_TIMEOUT=300

log() { printf 'forge-edge[nvidia-runtime-revert]: %s\n' "$*" >&2; }

changed=false
for tmpl in "$TMPL_DIR/config-v3.toml.tmpl" "$TMPL_DIR/config.toml.tmpl"; do
  if [ -e "$tmpl" ] && grep -q "^$MARKER" "$tmpl"; then
    rm -f "$tmpl"
    changed=true
    log "removed $tmpl"
  fi
done
if [ -e "$STATE_DIR/toolkit-installed-by-forge" ]; then
  DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" apt-get -o DPkg::Lock::Timeout=120 remove -y -qq \
    nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1
  rm -f "$STATE_DIR/toolkit-installed-by-forge"
  log "removed the toolkit packages forge-edge installed"
fi
if [ -e "$STATE_DIR/toolkit-apt-files" ]; then
  while IFS= read -r f; do
    [ -n "$f" ] && rm -f "$f" && log "removed $f"
  done <"$STATE_DIR/toolkit-apt-files"
  rm -f "$STATE_DIR/toolkit-apt-files"
fi
rm -f "$STATE_DIR/runtime.env"

# Directories nvidia-runtime.sh created (the topmost missing one of each path it made), deepest first, each only
# when empty: K3s, if it still runs, keeps its own.
if [ -e "$STATE_DIR/created-dirs" ]; then
  tops="$(cat "$STATE_DIR/created-dirs")"
  rm -f "$STATE_DIR/created-dirs"
  for deep in "$TMPL_DIR" "$STATE_DIR"; do
    while IFS= read -r top; do
      case "$deep/" in "$top"/*) ;; *) continue ;; esac
      d=$deep
      while rmdir "$d" 2>/dev/null; do
        [ "$d" = "$top" ] && break
        d=$(dirname "$d")
      done
    done <<<"$tops"
  done
fi

if [ "$changed" = true ]; then
  for svc in k3s k3s-agent; do
    if systemctl is-active --quiet "$svc"; then
      timeout "$RESTART_TIMEOUT" systemctl restart "$svc" || log "WARNING: $svc did not restart within ${RESTART_TIMEOUT}s"
    fi
  done
fi
