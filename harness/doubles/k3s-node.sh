#!/usr/bin/env bash
# Real node components for a simulated host (issue 11; FORGE_EDGE_NODE=kubelet): containerd 2 with runc and the
# CNI plugins, and a kubelet, laid out and configured as a K3s v1.36 agent does, instead of a kwok Node.
#
#   k3s-node.sh containerd   start containerd with the config.toml K3s rendered from our template, import the
#                            image tarballs of the images directory (as K3s preloads them), retag the test images
#   k3s-node.sh import FILE  import one file of the images directory as K3s's preloadFile does (the k3s double's
#                            image watcher calls it while K3s runs); prints "name<TAB>digest" per image
#   k3s-node.sh kubelet      write K3s's kubelet defaults + this host's drop-in, start the kubelet
#   k3s-node.sh kube-proxy   start kube-proxy as K3s runs it (iptables mode)
#   k3s-node.sh start        containerd, kubelet, kube-proxy, and the GPU device-plugin stand-in when FORGE_NODE_GPUS > 0
#   k3s-node.sh stop         kubelet, every container of the node (by cgroup), containerd; idempotent
#
# Environment (the k3s double or harness/realNode.ts sets it):
#   FORGE_NODE_BIN         dir of the `node` toolchain group (kubelet, containerd, ctr, runc, shim, cni/)
#   FORGE_NODE_NAME        node name;  FORGE_NODE_IP  node address (kubelet --node-ip, serving address)
#   FORGE_NODE_KUBECONFIG  kubeconfig of the kubelet
#   FORGE_NODE_POD_CIDR    this node's pod range (default 10.42.0.0/24, K3s's first node range)
#   FORGE_NODE_LABELS      comma-separated key=value labels (--node-labels)
#   FORGE_NODE_TAINTS      comma-separated key[=value]:effect taints (--register-with-taints)
#   FORGE_NODE_KUBELET_ARGS  name=value per line: K3s's kubelet-arg, appended last as --name=value (they win)
#   FORGE_NODE_RETAG       space-separated SRC=DST image names to tag after the import (the stack's image names)
#   FORGE_NODE_PROXY_KUBECONFIG  kubeconfig of kube-proxy (system:kube-proxy)
#   FORGE_NODE_CLUSTER_CIDR      K3s's cluster CIDR (default 10.42.0.0/16)
#   FORGE_NODE_GPUS, FORGE_NODE_GPU_REPLICAS  devices the device-plugin stand-in advertises: GPUS x REPLICAS
#   FORGE_NODE_WAIT_S      bound of each wait (default 60)
# Paths are K3s's (pkg/daemons/config, pkg/agent/config); what differs from K3s is in harness/README.md.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # k3s_image_refs, k3s_image_stream, K3S_PIN_LABELS, k3s_log

: "${FORGE_NODE_BIN:?FORGE_NODE_BIN (the node toolchain dir) is not set}"
PIDS=/run/k3s/forge-node
# stop finds the name start used (K3s's --node-name may differ from the hostname) in $PIDS/node-name.
if [[ -z ${FORGE_NODE_NAME:-} && -r $PIDS/node-name ]]; then FORGE_NODE_NAME=$(<"$PIDS/node-name"); fi
NODE_NAME=${FORGE_NODE_NAME:-$(hostname)}
WAIT_S=${FORGE_NODE_WAIT_S:-60}
AGENT=/var/lib/rancher/k3s/agent
CONTAINERD_CONFIG=$AGENT/etc/containerd/config.toml
CONTAINERD_ROOT=$AGENT/containerd
CONTAINERD_STATE=/run/k3s/containerd
SOCK=$CONTAINERD_STATE/containerd.sock
CNI_BIN=/var/lib/rancher/k3s/data/cni
CNI_CONF=$AGENT/etc/cni/net.d
IMAGES_DIR=$AGENT/images
KUBELET_CONF_D=$AGENT/etc/kubelet.conf.d
POD_MANIFESTS=$AGENT/pod-manifests
CLIENT_CA=$AGENT/client-ca.crt
LOGS=/var/log/forge-edge/node
# Per-node cgroup parent: every simulated host shares the machine's cgroup hierarchy (see harness/README.md). The
# inode of the node's mount namespace keeps two runs' nodes of one name apart (start and stop both run in it).
CGROUP_ROOT=/forge-edge/$NODE_NAME-$(stat -L -c %i /proc/self/ns/mnt)

log() { printf '%s k3s-node: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

ctr_() { "$FORGE_NODE_BIN/ctr" --address "$SOCK" --namespace k8s.io "$@"; }

# running NAME: the process of pid file NAME is alive.
running() { [[ -r $PIDS/$1.pid ]] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# spawn NAME CMD...: detached (own session), logs in $LOGS/NAME.log, pid in $PIDS/NAME.pid.
spawn() {
  local name=$1
  shift
  mkdir -p "$PIDS" "$LOGS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$PIDS/$name.pid"
}

# wait_for WHAT CMD...: polls CMD every 0.2 s for at most WAIT_S seconds.
wait_for() {
  local what=$1 deadline=$((SECONDS + WAIT_S))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what not up after ${WAIT_S}s"
    sleep 0.2
  done
}

# ---- containerd (pkg/agent/containerd: Run + preloadImages) ---------------------------------------------------
cni_config() {
  local cidr=${FORGE_NODE_POD_CIDR:-10.42.0.0/24}
  mkdir -p "$CNI_BIN" "$CNI_CONF"
  local p
  for p in "$FORGE_NODE_BIN"/cni/*; do ln -sfn "$p" "$CNI_BIN/$(basename "$p")"; done
  # K3s writes flannel's conflist (flannel delegating to bridge + portmap); without flannel the bridge is
  # configured directly with this node's range: same bridge (cni0), same portmap chain.
  cat >"$CNI_CONF/10-forge-bridge.conflist.tmp" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cbr0",
  "plugins": [
    { "type": "bridge", "bridge": "cni0", "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$cidr" }]], "dataDir": "/var/lib/rancher/k3s/data/cni-ipam" } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  mv "$CNI_CONF/10-forge-bridge.conflist.tmp" "$CNI_CONF/10-forge-bridge.conflist"
}

# host_containerd_config: what this machine needs and a K3s node would not, as a drop-in of the imports K3s's base
# template declares (config-v3.toml.d/*.toml next to the template), so our template and K3s's rendering stay as is.
host_containerd_config() {
  local d
  d=$(dirname "$CONTAINERD_CONFIG")/config-v3.toml.d
  grep -qF "\"$d/*.toml\"" "$CONTAINERD_CONFIG" || fail "$CONTAINERD_CONFIG does not import $d/*.toml"
  mkdir -p "$d"
  # No CAP_SYS_RESOURCE here: runc cannot set a negative oom_score_adj (the sandbox's -998), so keep each
  # container's at or above containerd's own, as K3s does for rootless nodes.
  cat >"$d/50-forge-edge-host.toml" <<'EOF'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
EOF
}

start_containerd() {
  [[ -s $CONTAINERD_CONFIG ]] || fail "$CONTAINERD_CONFIG is missing (K3s renders it before starting containerd)"
  cni_config
  host_containerd_config
  mkdir -p "$CONTAINERD_ROOT" "$CONTAINERD_STATE"
  if ! running containerd; then
    # K3s runs containerd with its bin dir first on PATH: the shim and runc are found there.
    spawn containerd env PATH="$FORGE_NODE_BIN:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      "$FORGE_NODE_BIN/containerd" --config "$CONTAINERD_CONFIG"
  fi
  wait_for "containerd ($SOCK)" ctr_ version
  preload_images
  local pair
  for pair in ${FORGE_NODE_RETAG:-}; do
    ctr_ images tag --force "${pair%%=*}" "${pair#*=}" >/dev/null || fail "tagging ${pair%%=*} as ${pair#*=}"
  done
}

# ---- images (k3s pkg/agent/containerd/containerd.go: PreloadImages, preloadFile; watcher.go) --------------------
# The files imported since containerd's start ("path<TAB>size mtime", K3s's filesCache) and every file the start
# looked at, imported or not: the k3s double's image watcher goes on from there.
IMAGES_CACHE=$PIDS/images.cache
IMAGES_SEEN=$PIDS/images.seen

# import_image FILE: preloadFile: containerd's import into k8s.io (all platforms), K3s's pin labels on every
# image, and each tagged name also as name@digest (retagImages). Prints "name<TAB>digest" per image; on failure
# the error, and returns 1.
import_image() {
  local f=$1 refs out name src=""
  refs=$(k3s_image_refs "$f") || {
    printf '%s\n' "$refs"
    return 1
  }
  if [[ $f == *.txt ]]; then
    # A pre-pull list: K3s pulls what the CRI does not have (ImageStatus); no registry is reachable from here.
    while IFS=$'\t' read -r name _; do
      [[ -n $name ]] || continue
      ctr_ images ls -q | grep -qxF "$name" || {
        echo "failed to pull images from $f: $name: no registry is reachable from a simulated node"
        return 1
      }
    done <<<"$refs"
  else
    out=$(k3s_image_stream "$f" | ctr_ images import --all-platforms --no-unpack=false - 2>&1) || {
      printf '%s\n' "$(tail -n1 <<<"$out")"
      return 1
    }
  fi
  while IFS=$'\t' read -r name _; do
    [[ -n $name ]] || continue
    if [[ $name == *@* && -n $src ]]; then
      ctr_ images tag --force "$src" "$name" >/dev/null
    else
      ctr_ images label "$name" "${K3S_PIN_LABELS[@]}" >/dev/null
      src=$name
    fi
  done <<<"$refs"
  printf '%s\n' "$refs"
}

# preload_images: PreloadImages at containerd's start: clear the pins K3s set before, then import every file of the
# images directory in name order; a file that fails is logged and skipped (K3s starts anyway).
preload_images() {
  local n f st
  while IFS= read -r n; do
    [[ -n $n ]] && ctr_ images label "$n" io.cattle.k3s.pinned= io.cri-containerd.pinned= >/dev/null
  done < <(ctr_ images ls -q 'labels."io.cattle.k3s.pinned"==pinned')
  : >"$IMAGES_CACHE"
  : >"$IMAGES_SEEN"
  shopt -s nullglob dotglob
  for f in "$IMAGES_DIR"/*; do
    [[ -f $f ]] || continue
    st=$(stat -c '%s %.9Y' -- "$f")
    printf '%s\t%s\n' "$f" "$st" >>"$IMAGES_SEEN"
    k3s_image_supported "$f" || continue
    if import_image "$f" >"$PIDS/import.out" 2>&1; then
      printf '%s\t%s\n' "$f" "$st" >>"$IMAGES_CACHE"
      log "imported $(basename "$f")"
    else
      log "ERROR: importing $f: $(tail -n1 "$PIDS/import.out")"
    fi
  done
  shopt -u nullglob dotglob
}

# ---- kubelet (pkg/daemons/agent: defaultKubeletConfig + kubeletArgsAndConfig) -----------------------------------
start_kubelet() {
  : "${FORGE_NODE_KUBECONFIG:?FORGE_NODE_KUBECONFIG is not set}"
  : "${FORGE_NODE_IP:?FORGE_NODE_IP is not set}"
  mkdir -p "$KUBELET_CONF_D" "$POD_MANIFESTS" /var/lib/kubelet
  [[ -s $CLIENT_CA ]] || fail "$CLIENT_CA is missing (K3s writes the cluster's client CA there for the kubelet)"
  # K3s's defaults (defaultKubeletConfig), as K3s writes them to its drop-in dir.
  cat >"$KUBELET_CONF_D/00-k3s-defaults.conf" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 2m0s}
  x509: {clientCAFile: $CLIENT_CA}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 5m0s, cacheUnauthorizedTTL: 30s}
cgroupDriver: cgroupfs
clusterDNS: [10.43.0.10]
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://$SOCK
cpuManagerReconcilePeriod: 10s
evictionHard: {imagefs.available: 5%, nodefs.available: 5%}
evictionMinimumReclaim: {imagefs.available: 10%, nodefs.available: 10%}
evictionPressureTransitionPeriod: 5m0s
failSwapOn: false
fileCheckFrequency: 20s
healthzBindAddress: 127.0.0.1
httpCheckFrequency: 20s
imageMinimumGCAge: 2m0s
nodeStatusReportFrequency: 5m0s
nodeStatusUpdateFrequency: 10s
runtimeRequestTimeout: 2m0s
serializeImagePulls: false
staticPodPath: $POD_MANIFESTS
streamingConnectionIdleTimeout: 4h0m0s
syncFrequency: 1m0s
volumeStatsAggPeriod: 1m0s
EOF
  # What this machine needs and a K3s node would not (harness/README.md, "Real nodes").
  cat >"$KUBELET_CONF_D/50-forge-edge-host.conf" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupRoot: $CGROUP_ROOT
healthzBindAddress: $FORGE_NODE_IP
address: $FORGE_NODE_IP
podCIDR: ${FORGE_NODE_POD_CIDR:-10.42.0.0/24}
EOF
  local c
  for c in cpu cpuacct cpuset memory pids devices freezer blkio hugetlb systemd; do
    [[ -d /sys/fs/cgroup/$c ]] && mkdir -p "/sys/fs/cgroup/$c$CGROUP_ROOT"
  done
  local extra=() a
  while IFS= read -r a; do [[ -n $a ]] && extra+=("--${a#--}"); done <<<"${FORGE_NODE_KUBELET_ARGS:-}"
  if ! running kubelet; then
    spawn kubelet "$FORGE_NODE_BIN/kubelet" --config-dir="$KUBELET_CONF_D" --kubeconfig="$FORGE_NODE_KUBECONFIG" \
      --read-only-port=0 --hostname-override="$NODE_NAME" --node-ip="$FORGE_NODE_IP" \
      --node-labels="${FORGE_NODE_LABELS:-}" ${FORGE_NODE_TAINTS:+--register-with-taints="$FORGE_NODE_TAINTS"} \
      --root-dir=/var/lib/kubelet --cert-dir=/var/lib/kubelet/pki "${extra[@]}"
  fi
  wait_for "kubelet healthz" curl -fsS "http://$FORGE_NODE_IP:10248/healthz"
}

# ---- kube-proxy (pkg/daemons/agent: kubeProxyArgs) ---------------------------------------------------------------
start_kube_proxy() {
  : "${FORGE_NODE_PROXY_KUBECONFIG:?FORGE_NODE_PROXY_KUBECONFIG is not set}"
  running kube-proxy && return 0
  # conntrack limits 0: kube-proxy leaves the conntrack sysctls as they are (K3s's own arguments).
  spawn kube-proxy "$FORGE_NODE_BIN/kube-proxy" --proxy-mode=iptables --healthz-bind-address=127.0.0.1 \
    --kubeconfig="$FORGE_NODE_PROXY_KUBECONFIG" --cluster-cidr="${FORGE_NODE_CLUSTER_CIDR:-10.42.0.0/16}" \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0s --conntrack-tcp-timeout-close-wait=0s \
    --hostname-override="$NODE_NAME"
  wait_for "kube-proxy healthz" curl -fsS http://127.0.0.1:10256/healthz
}

# ---- network policy (k3s pkg/agent/netpol: kube-router's controller in the agent, as system:k3s-controller) -------
# FORGE_NODE_NETPOL=1 starts it: FORGE_NODE_NETPOL_BIN (k3s-netpol of the `netpol` group), FORGE_NODE_NETPOL_KUBECONFIG
# (CN=system:k3s-controller, bound to K3s's ClusterRole of that name), FORGE_NODE_SERVICE_CIDR (default 10.43.0.0/16).
start_netpol() {
  [[ ${FORGE_NODE_NETPOL:-0} == 1 ]] || return 0
  : "${FORGE_NODE_NETPOL_BIN:?FORGE_NODE_NETPOL_BIN is not set}" "${FORGE_NODE_NETPOL_KUBECONFIG:?FORGE_NODE_NETPOL_KUBECONFIG is not set}"
  running netpol && return 0
  spawn netpol "$FORGE_NODE_NETPOL_BIN" --kubeconfig="$FORGE_NODE_NETPOL_KUBECONFIG" --node-name="$NODE_NAME" \
    --service-cidr="${FORGE_NODE_SERVICE_CIDR:-10.43.0.0/16}" --service-node-port-range=30000-32767
  # Enforcing once Run made its top-level chains (KUBE-ROUTER-FORWARD jumps to each pod's firewall chain).
  wait_for "network policy controller (chain KUBE-ROUTER-FORWARD; log $LOGS/netpol.log)" iptables -w 5 -S KUBE-ROUTER-FORWARD
}

# ---- GPU device plugin stand-in (k8s.io/kubelet deviceplugin v1beta1 registration) -------------------------------
start_device_plugin() {
  local gpus=${FORGE_NODE_GPUS:-0}
  ((gpus > 0)) || return 0
  running gpu-device-plugin && return 0
  spawn gpu-device-plugin "$FORGE_NODE_BIN/gpu-device-plugin" --node="$NODE_NAME" --gpus="$gpus" \
    --replicas="${FORGE_NODE_GPU_REPLICAS:-1}"
  wait_for "device plugin registration" grep -q "registered " "$LOGS/gpu-device-plugin.log"
}

# ---- stop (k3s-killall.sh: kill the shims' trees, then the processes left in the pod cgroups) ------------------
stop_all() {
  local pid c
  local n
  for n in gpu-device-plugin netpol kube-proxy kubelet; do
    if running "$n"; then kill "$(cat "$PIDS/$n.pid")" 2>/dev/null || true; fi
  done
  # Every container process of this node is in a cgroup under CGROUP_ROOT (pids hierarchy).
  while IFS= read -r pid; do
    kill -9 "$pid" 2>/dev/null || true
  done < <(find "/sys/fs/cgroup/pids$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null)
  if running containerd; then kill "$(cat "$PIDS/containerd.pid")" 2>/dev/null || true; fi
  kill_shims
  # Empty pod cgroups go away with the node (deepest first).
  for c in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
    if [[ -d $c ]]; then find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    rmdir "$(dirname "$c")" 2>/dev/null || true # /forge-edge, once no node uses it
  done
  unmount_node
  rm -f "$PIDS"/*.pid "$PIDS/node-name"
}

# unmount_node: the volume mounts the kubelet and the shims left (k3s-io/k3s install.sh, k3s-killall.sh:
# do_unmount_and_remove /run/k3s, /var/lib/kubelet/pods, /var/lib/kubelet/plugins). Only mounts strictly below
# those paths: on a simulated host /run/k3s itself is the host's private mount.
unmount_node() {
  local m
  while IFS= read -r m; do
    { umount -l "$m" 2>/dev/null && rm -rf "$m"; } || true
  done < <(awk '$2 ~ /^\/(run\/k3s|var\/lib\/kubelet\/pods|var\/lib\/kubelet\/plugins)\// { print $2 }' /proc/self/mounts | sort -r)
}

# kill_shims: the runc shims of this node (started with -address $SOCK). Every node's socket has that same path in
# its own mount namespace, so a shim is this node's only if it also shares this script's mount namespace: another
# node's stop must never kill this node's pods.
kill_shims() {
  local p ns
  ns=$(readlink /proc/self/ns/mnt)
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/exe" 2>/dev/null) == "$FORGE_NODE_BIN/containerd-shim-runc-v2" ]] || continue
    [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$ns" ]] || continue
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $SOCK"; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
  done
}

case ${1:-} in
containerd) start_containerd ;;
kubelet) start_kubelet ;;
kube-proxy) start_kube_proxy ;;
start)
  mkdir -p "$PIDS"
  printf '%s\n' "$NODE_NAME" >"$PIDS/node-name"
  start_containerd
  start_kubelet
  start_kube_proxy
  start_netpol
  start_device_plugin
  ;;
stop) stop_all ;;
import)
  [[ -n ${2:-} ]] || fail "usage: k3s-node.sh import FILE"
  import_image "$2"
  ;;
*) fail "usage: k3s-node.sh containerd|kubelet|kube-proxy|start|stop|import FILE" ;;
esac
