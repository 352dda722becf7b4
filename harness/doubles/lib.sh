#!/usr/bin/env bash
# Shared helpers of the forge-edge test doubles. Sourced, never run. Inside a test host this file
# lives at /opt/forge-harness/doubles/lib.sh next to env (control plane + host identity) and gpu.
# shellcheck disable=SC2034  # variables are used by the scripts that source this file

FH=${FORGE_HARNESS_DIR:-/opt/forge-harness}
DOUBLES_LOG_DIR=/var/log/forge-edge
DOUBLES_LOG=$DOUBLES_LOG_DIR/doubles.log
SYSTEMD_STATE=$DOUBLES_LOG_DIR/systemd-state

if [[ -r $FH/env ]]; then
  # shellcheck source=/dev/null
  . "$FH/env"
fi

# log_call NAME ARGS... : one line "<epoch> <name> <args...>" per invocation.
log_call() {
  local line
  line="$(date +%s) $*"
  line=${line//$'\n'/\\n}
  mkdir -p "$DOUBLES_LOG_DIR"
  printf '%s\n' "$line" >>"$DOUBLES_LOG"
}

die() {
  printf '%s\n' "$*" >&2
  exit 1
}

# maybe_fault NAME : fail like the real tool would, when the test injected a fault for NAME
# (a file $FH/faults/NAME whose content is the error message).
maybe_fault() {
  if [[ -r $FH/faults/$1 ]]; then
    printf '%s\n' "$(cat "$FH/faults/$1")" >&2
    exit 1
  fi
}

load_gpu() {
  GPU_NAME="" GPU_MEMORY_MIB=0 GPU_DRIVER="" GPU_COMPUTE_CAP="" GPU_COUNT=0 GPU_DRIVER_LOADED=false
  if [[ -r $FH/gpu ]]; then
    # shellcheck source=/dev/null
    . "$FH/gpu"
  fi
}

# Deterministic GPU UUID for GPU index $1 on this host.
gpu_uuid() {
  local h
  h=$(printf '%s/%s/%s' "${FORGE_HOST_NAME:-host}" "$GPU_NAME" "$1" | md5sum | cut -c1-32)
  printf 'GPU-%s-%s-%s-%s-%s' "${h:0:8}" "${h:8:4}" "${h:12:4}" "${h:16:4}" "${h:20:12}"
}

require_control_plane() {
  [[ -n ${FORGE_KUBECTL:-} && -n ${FORGE_KUBECONFIG:-} && -n ${FORGE_API_PORT:-} ]] ||
    die "forge-edge double: this test host was started without a control plane (startSshHost controlPlane option)"
}

# kube ARGS... : the real kubectl against the test control plane as cluster admin.
kube() {
  "$FORGE_KUBECTL" --kubeconfig="$FORGE_KUBECONFIG" --request-timeout=20s "$@"
}

# k3s_version: what the k3s double reports (the test may rewrite the file at any time).
# The version the installed "binary" reports: what install.sh last installed, else the harness default.
K3S_INSTALLED_VERSION_FILE=/var/lib/rancher/k3s/.forge-double-version
k3s_version() {
  local v=v1.36.4+k3s1
  if [[ -r $K3S_INSTALLED_VERSION_FILE ]]; then
    v=$(head -n1 "$K3S_INSTALLED_VERSION_FILE")
  elif [[ -n ${K3S_DOUBLE_VERSION:-} ]]; then
    v=$K3S_DOUBLE_VERSION
  elif [[ -r $FH/k3s-version ]]; then
    v=$(head -n1 "$FH/k3s-version")
  fi
  printf '%s' "$v"
}

# is_loopback HOST : the harness may only ever dial 127.0.0.0/8.
is_loopback() {
  [[ $1 =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]]
}

# tcp_open HOST PORT : true if something accepts connections (loopback only).
tcp_open() {
  is_loopback "$1" || die "forge-edge double: refusing to dial non-loopback address $1"
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# forge_delay NAME [FILE...] : realistic durations (issue 12), off unless the harness set FORGE_EDGE_DURATIONS in the
# host's env (JSON from harness/ttsSim.ts: {"scale": s, "delays": {NAME: {"seconds": x, "bytesPerSecond": r}}}).
# Sleeps NAME's seconds (already scaled) plus the bytes of FILEs at its rate (unscaled: the simulation stages files
# scaled by the same factor), and records "delay NAME <seconds> bytes=<n>" in the doubles' log first. Off, or NAME
# not configured: returns at once, recording nothing.
forge_delay() {
  local name=$1 bytes=0 f s
  shift
  [[ -n ${FORGE_EDGE_DURATIONS:-} ]] || return 0
  for f in "$@"; do
    if [[ -f $f ]]; then bytes=$((bytes + $(stat -c %s "$f"))); fi
  done
  s=$(jq -r --arg n "$name" --argjson b "$bytes" '.delays[$n] // empty
      | (.seconds // 0) + (if (.bytesPerSecond // 0) > 0 then $b / .bytesPerSecond else 0 end)
      | (. * 1000 | round) / 1000' <<<"$FORGE_EDGE_DURATIONS") ||
    die "forge-edge double: FORGE_EDGE_DURATIONS is not the JSON harness/ttsSim.ts writes"
  [[ -n $s ]] || return 0
  log_call delay "$name" "$s" "bytes=$bytes"
  sleep "$s"
}
