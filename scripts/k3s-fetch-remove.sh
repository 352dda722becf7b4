#!/usr/bin/env bash
# Undoes k3s-fetch.sh: removes the downloaded installer and binary. Idempotent.
set -euo pipefail

STATE_DIR=/var/lib/forge-edge
rm -rf "${STATE_DIR:?}/fetch"
rmdir "$STATE_DIR" 2>/dev/null || true
