#!/usr/bin/env bash
# Undoes image-prepull.sh: removes the pre-pull list (the images stay in containerd's store until K3s's own uninstall
# removes it). Idempotent.
set -euo pipefail

rm -f /var/lib/rancher/k3s/agent/images/forge-edge-prepull.txt
