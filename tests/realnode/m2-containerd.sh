#!/usr/bin/env bash
# M2 drill (issue 11): containerd 2 + runc in a simulated host's namespaces, configured as K3s would.
# Run as root:  unshare --net --mount --uts --propagation private -- bash tests/realnode/m2-containerd.sh
# (the prototype makes the host's private mounts itself, as harness/sshHost.ts's namespace-setup.sh does).
# Renders config.toml from forge-edge's nvidia template with forge-edge-checker (K3s's rendering), starts
# containerd through harness/doubles/k3s-node.sh, imports the pause image tarball, then `ctr run`s it with the
# default runtime and with the `nvidia` handler's binary, and checks both tasks run. Prints timings.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${FORGE_EDGE_CACHE:-$HOME/.cache/forge-edge}
# shellcheck source=/dev/null
. "$REPO/harness/versions.env"
export FORGE_NODE_BIN="$CACHE/bin/node-$KUBE_VERSION-$NODE_IMAGES_VERSION"
CHECKER="$CACHE/bin/forge-edge-checker-$CHECKER_VERSION/forge-edge-checker"
[[ -x $FORGE_NODE_BIN/containerd ]] || { echo "build the node group first: bash harness/build-toolchain.sh node" >&2; exit 1; }
[[ $(readlink /proc/self/ns/mnt) != $(readlink /proc/1/ns/mnt) ]] || { echo "run me under unshare --mount (see header)" >&2; exit 1; }
t0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - t0) / 1000000 )); }

ip link set lo up
# /run/containerd: runc state and shim sockets (containerd defaults, also on K3s) must be private to the host.
for d in /var/lib/rancher /etc/rancher /run/k3s /run/containerd /var/lib/kubelet /var/log/forge-edge /usr/local/bin; do
  mkdir -p "$d" && mount -t tmpfs tmpfs "$d"
done
# The nvidia-container-runtime double, where the node script installs it; it records its use and execs runc.
install -m 0755 "$REPO/harness/doubles/nvidia-container-runtime" /usr/local/bin/nvidia-container-runtime
export FORGE_HARNESS_DIR="$REPO/harness" # lib.sh of the doubles, as /opt/forge-harness in a test host

agent=/var/lib/rancher/k3s/agent
mkdir -p "$agent/etc/containerd" "$agent/images"
# forge-edge's template, as scripts/nvidia-runtime.sh writes it for containerd config version 3.
cat >"$agent/etc/containerd/config-v3.toml.tmpl" <<'TMPL'
# forge-edge nvidia runtime (m2 drill)
{{ template "base" . }}
{{ if not (index .ExtraRuntimes "nvidia").BinaryName }}
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'.options]
  BinaryName = "/usr/local/bin/nvidia-container-runtime"
  SystemdCgroup = {{ .SystemdCgroup }}
{{ end }}
TMPL
# No systemd on this machine: K3s renders SystemdCgroup = false then (cfg.Systemd is false).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$CHECKER" render-containerd \
  --k3s-version v1.36.4+k3s1 --tmpl-dir "$agent/etc/containerd" --out "$agent/etc/containerd/config.toml" \
  --systemd-cgroup=false
"$CHECKER" check-containerd --runtime nvidia "$agent/etc/containerd/config.toml"
cp "$FORGE_NODE_BIN/images/pause.tar" "$agent/images/"
echo "M2: setup $(ms) ms"

export FORGE_NODE_NAME=m2
trap 'bash "$REPO/harness/doubles/k3s-node.sh" stop || true' EXIT
bash "$REPO/harness/doubles/k3s-node.sh" containerd
echo "M2: containerd up + image imported $(ms) ms"
ctr_() { "$FORGE_NODE_BIN/ctr" --address /run/k3s/containerd/containerd.sock --namespace k8s.io "$@"; }
ctr_ images ls -q
ctr_ run -d --cgroup "/forge-edge/m2/plain" "$NODE_PAUSE_IMAGE" m2-plain
ctr_ run -d --cgroup "/forge-edge/m2/nvidia" --runc-binary /usr/local/bin/nvidia-container-runtime "$NODE_PAUSE_IMAGE" m2-nvidia
sleep 1
ctr_ tasks ls
for t in m2-plain m2-nvidia; do
  ctr_ tasks ls | grep -qE "^$t +[0-9]+ +RUNNING" || { echo "M2 FAIL: task $t is not RUNNING" >&2; exit 1; }
done
echo "M2: both tasks RUNNING $(ms) ms"
grep -q "nvidia-container-runtime .* create .*m2-nvidia" /var/log/forge-edge/doubles.log ||
  { echo "M2 FAIL: m2-nvidia did not go through the nvidia-container-runtime double" >&2; exit 1; }
! grep -q "nvidia-container-runtime .* create .*m2-plain" /var/log/forge-edge/doubles.log ||
  { echo "M2 FAIL: m2-plain went through the nvidia runtime" >&2; exit 1; }
echo "M2: the nvidia double recorded m2-nvidia's create/start and passed through to runc"
for t in m2-plain m2-nvidia; do
  ctr_ tasks kill -s SIGTERM "$t"
  ctr_ tasks delete "$t" >/dev/null 2>&1 || { sleep 1; ctr_ tasks delete "$t" >/dev/null; }
  ctr_ containers delete "$t"
done
[[ -z $(ctr_ tasks ls -q) ]] || { echo "M2 FAIL: tasks left" >&2; exit 1; }
echo "M2: OK in $(ms) ms"
