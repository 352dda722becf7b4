#!/usr/bin/env bash
# One-time set-up on a fresh machine: Debian packages the tests and the demo use, the npm dependencies, and the
# offline toolchain (Pulumi CLI, providers, control plane) built from Go modules into a cache outside the repo.
# Idempotent: a second run finds everything in place and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Packages: shellcheck (lint); openssh-server: the SSH test hosts; socat: the K3s double's API port; openssl: test PKI;
# iproute2/util-linux: mount namespaces for the hosts; jq: scripts' JSON reading; python3-*: what trixie's ansible-core
# (harness/ansible.sh, the k3s-ansible bench) imports on the machine's python3; libseccomp-dev (static runc) and
# iptables (the CNI bridge, kube-proxy): the real-node suite's `node` toolchain group (npm run test:realnode); ipset:
# kube-router's network policy controller (group `netpol`, tests/realnode/networkPolicy.test.ts).
packages=(shellcheck openssh-server openssh-client socat openssl util-linux iproute2 jq
  python3-jinja2 python3-yaml python3-cryptography python3-packaging python3-resolvelib python3-netaddr
  libseccomp-dev iptables ipset)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund
else
  log "npm dependencies up to date"
fi

# actionlint lints the GitHub Actions templates in the unit suite; cached per version like the toolchain.
# shellcheck source-path=SCRIPTDIR source=versions.env disable=SC1091
. harness/versions.env
actionlint="${FORGE_EDGE_CACHE:-$HOME/.cache/forge-edge}/bin/actionlint-$ACTIONLINT_VERSION/actionlint"
if [ ! -x "$actionlint" ]; then
  log "building actionlint $ACTIONLINT_VERSION from the Go module proxy"
  GOBIN="$(dirname "$actionlint")" go install "$ACTIONLINT_MODULE@$ACTIONLINT_VERSION"
else
  log "actionlint $ACTIONLINT_VERSION up to date"
fi

bash harness/ansible.sh

log "building the offline toolchain (cached in \${FORGE_EDGE_CACHE:-\$HOME/.cache/forge-edge})"
bash harness/build-toolchain.sh
log "done"
