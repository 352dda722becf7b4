#!/usr/bin/env bash
# Undoes airgap-stage.sh: removes the staging directory and everything copied into it. Idempotent.
set -euo pipefail

STATE_DIR=/var/lib/forge-edge
rm -rf "${STATE_DIR:?}/airgap"
rmdir "$STATE_DIR" 2>/dev/null || true
