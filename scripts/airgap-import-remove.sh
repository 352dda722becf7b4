#!/usr/bin/env bash
# Undoes airgap-import.sh: removes the tarballs it placed in K3s's images directory and its record (the imported
# images stay in containerd's store until K3s's own uninstall removes it). Idempotent.
set -euo pipefail

STATE_DIR=/var/lib/forge-edge
RECORD="$STATE_DIR/airgap-import"
IMAGES_DIR=/var/lib/rancher/k3s/agent/images

if [ -e "$RECORD" ]; then
  while read -r name _; do
    case "$name" in "" | */* | .*) continue ;; esac
    rm -f "${IMAGES_DIR:?}/$name" "$IMAGES_DIR/.forge-edge-$name.part"
  done <"$RECORD"
  rm -f "$RECORD" "$RECORD.new"
fi
rmdir "$STATE_DIR" 2>/dev/null || true
