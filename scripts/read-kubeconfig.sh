#!/usr/bin/env bash
# Prints the K3s admin kubeconfig. Its output is cluster-admin credentials: the Pulumi resource running this keeps
# stdout secret and never logs it.
set -euo pipefail

[ -s /etc/rancher/k3s/k3s.yaml ] || { echo "forge-edge: /etc/rancher/k3s/k3s.yaml not found: is this a K3s server?" >&2; exit 1; }
cat /etc/rancher/k3s/k3s.yaml
