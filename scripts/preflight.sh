#!/usr/bin/env bash
# Read-only checks before the first `pulumi up` on a box: runs as the SSH login user (never through sudo) and
# changes nothing. One line per check on stdout, tab-separated: CHECK <ok|warn|fail> <name> <detail> <fix>.
# Driven by tools/preflight.ts (`npm run preflight -- --stack <stack>`), which prints them as one table.
#
# forge:param SKU                SKU profile name (thor, rtx4000, p40)
# forge:param PRODUCT_MATCH      substring nvidia-smi must report in the GPU name
# forge:param EXPECT_GPUS        number of GPUs the stack declares for this node
# forge:param DRIVER_MIN_BRANCH  lowest supported driver branch (0: none)
# forge:param DRIVER_MAX_BRANCH  highest supported driver branch (0: none)
# forge:param TOOLKIT_SOURCE     apt (installed by forge-edge when missing) or jetpack (must be there)
# forge:param TOOLKIT_VERSION    NVIDIA Container Toolkit version the stack pins
# forge:param TOOLKIT_MIN        oldest toolkit that works here (jetpack: the first that detects Thor as Tegra)
# forge:param MIN_L4T_MAJOR      lowest L4T major release in /etc/nv_tegra_release (Thor: 38 = JetPack 7); 0: not Tegra
# forge:param MIN_FREE_GIB       free disk needed under /var/lib/rancher (K3s, images, local-path volumes)
# forge:param PORTS              space-separated TCP ports K3s and the stack must be able to listen on
# forge:param CGROUP_V2_REQUIRED true when the kubelet of the pinned K3s refuses cgroup v1 (Kubernetes 1.35+)
set -euo pipefail

: "${SKU:?}" "${PRODUCT_MATCH:?}" "${EXPECT_GPUS:?}" "${DRIVER_MIN_BRANCH:?}" "${DRIVER_MAX_BRANCH:?}"
: "${TOOLKIT_SOURCE:?}" "${TOOLKIT_VERSION:?}" "${TOOLKIT_MIN:?}" "${MIN_L4T_MAJOR:?}" "${MIN_FREE_GIB:?}" "${PORTS:?}"
: "${CGROUP_V2_REQUIRED:?}"

# report STATUS NAME DETAIL [FIX]
report() { printf 'CHECK\t%s\t%s\t%s\t%s\n' "$1" "$2" "${3//$'\t'/ }" "${4:-}"; }

# --- sudo: the bootstrap runs every step as root ---------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  report ok sudo "logged in as root"
elif ! command -v sudo >/dev/null 2>&1; then
  report fail sudo "user $(id -un) is not root and sudo is not installed" \
    "log in as root, or install sudo and grant '$(id -un) ALL=(ALL) NOPASSWD: ALL' in /etc/sudoers.d/forge-edge"
elif sudo -n true >/dev/null 2>&1; then
  report ok sudo "user $(id -un) has passwordless sudo"
else
  report fail sudo "user $(id -un) has no passwordless sudo (sudo -n true failed)" \
    "add '$(id -un) ALL=(ALL) NOPASSWD: ALL' to /etc/sudoers.d/forge-edge (visudo -f), or log in as root"
fi

# --- GPU and driver --------------------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1; then
  report fail gpu "nvidia-smi not found" "install the NVIDIA driver for $SKU (see the README's prerequisites)"
elif ! gpus="$(timeout 60 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)"; then
  report fail gpu "nvidia-smi failed: ${gpus%%$'\n'*}" "load the NVIDIA driver (reboot after installing it; check dmesg)"
else
  count="$(printf '%s\n' "$gpus" | grep -c .)"
  bad_name="" bad_driver="" names="" drivers=""
  while IFS=, read -r name driver; do
    name="${name# }" driver="${driver# }"
    names="${names:+$names; }$name" drivers="${drivers:+$drivers, }$driver"
    case "$name" in *"$PRODUCT_MATCH"*) ;; *) bad_name="$name" ;; esac
    branch="${driver%%.*}"
    if [ "$DRIVER_MIN_BRANCH" -gt 0 ] && [ "$branch" -lt "$DRIVER_MIN_BRANCH" ]; then bad_driver="$driver (below R$DRIVER_MIN_BRANCH)"; fi
    if [ "$DRIVER_MAX_BRANCH" -gt 0 ] && [ "$branch" -gt "$DRIVER_MAX_BRANCH" ]; then bad_driver="$driver (past R$DRIVER_MAX_BRANCH, the last branch for this GPU)"; fi
  done <<<"$gpus"
  if [ -n "$bad_name" ]; then
    report fail gpu "found '$bad_name', not a $SKU GPU (name containing '$PRODUCT_MATCH')" \
      "run the stack of this box's SKU, or fix nodes[].host: this node is in the wrong stack"
  elif [ "$count" -lt "$EXPECT_GPUS" ]; then
    report fail gpu "found $count GPU(s), the stack declares $EXPECT_GPUS" "set nodes[].gpus to $count, or seat/enable the missing GPUs"
  else
    report ok gpu "$count × $names"
  fi
  if [ -n "$bad_driver" ]; then
    want="R$DRIVER_MIN_BRANCH or newer"
    [ "$DRIVER_MAX_BRANCH" -gt 0 ] && want="R$DRIVER_MAX_BRANCH at most"
    report fail driver "driver $bad_driver" "install the $want driver branch for $SKU, then reboot"
  else
    report ok driver "driver $drivers"
  fi
fi

# --- JetPack (Tegra) and the container toolkit ----------------------------------------------------------------
if [ "$MIN_L4T_MAJOR" -gt 0 ]; then
  rel="$(head -n1 /etc/nv_tegra_release 2>/dev/null || true)"
  major="$(printf '%s' "$rel" | sed -n 's/^# R\([0-9][0-9]*\) .*/\1/p')"
  if [ -z "$major" ]; then
    report fail jetpack "no L4T release in /etc/nv_tegra_release" "flash JetPack 7 (L4T R$MIN_L4T_MAJOR or newer) with SDK Manager"
  elif [ "$major" -lt "$MIN_L4T_MAJOR" ]; then
    report fail jetpack "L4T R$major (${rel#\# })" "upgrade to JetPack 7 (L4T R$MIN_L4T_MAJOR or newer)"
  else
    report ok jetpack "L4T R$major"
  fi
fi
have="$(nvidia-ctk --version 2>/dev/null | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n1 || true)"
older() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }
if [ "$TOOLKIT_SOURCE" = jetpack ]; then
  if [ -z "$have" ]; then
    report fail toolkit "nvidia-container-toolkit not installed" "install JetPack's container runtime: apt-get install nvidia-container"
  elif older "$have" "$TOOLKIT_MIN"; then
    report fail toolkit "nvidia-container-toolkit $have is older than $TOOLKIT_MIN" \
      "upgrade JetPack's container toolkit to $TOOLKIT_MIN or newer (apt-get install --only-upgrade nvidia-container-toolkit)"
  else
    report ok toolkit "nvidia-container-toolkit $have (JetPack)"
  fi
elif [ -z "$have" ]; then
  report warn toolkit "nvidia-container-toolkit not installed: forge-edge installs $TOOLKIT_VERSION from NVIDIA's apt repository" \
    "make https://nvidia.github.io/libnvidia-container reachable from the box, or preinstall the toolkit $TOOLKIT_VERSION"
elif older "$have" "$TOOLKIT_MIN"; then
  report warn toolkit "nvidia-container-toolkit $have: forge-edge upgrades it to $TOOLKIT_VERSION from NVIDIA's apt repository" \
    "make https://nvidia.github.io/libnvidia-container reachable from the box, or upgrade the toolkit to $TOOLKIT_VERSION"
else
  report ok toolkit "nvidia-container-toolkit $have"
fi

# --- disk: K3s, its images and local-path volumes live under /var/lib/rancher ----------------------------------
dir=/var/lib/rancher
while [ ! -d "$dir" ]; do dir="$(dirname "$dir")"; done
free_kib="$(df -Pk "$dir" | awk 'NR==2 {print $4}')"
free_gib=$((free_kib / 1024 / 1024))
if [ "$free_gib" -lt "$MIN_FREE_GIB" ]; then
  report fail disk "$((free_kib / 1024)) MiB free on $dir ($(df -P "$dir" | awk 'NR==2 {print $6}')), $MIN_FREE_GIB GiB needed" \
    "free space or grow the filesystem holding /var/lib/rancher (K3s data, images, local-path volumes), or lower storage.size"
else
  report ok disk "$free_gib GiB free on $dir"
fi

# --- ports: nothing else may listen on them (any local address) -----------------------------------------------
busy=""
for port in $PORTS; do
  hex="$(printf '%04X' "$port")"
  if cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p=":$hex" 'NR>0 && $4=="0A" && substr($2, length($2)-4)==p {f=1} END {exit !f}'; then
    busy="${busy:+$busy }$port"
  fi
done
if [ -z "$busy" ]; then
  report ok ports "free: $PORTS"
elif systemctl is-active --quiet k3s 2>/dev/null || systemctl is-active --quiet k3s-agent 2>/dev/null; then
  report ok ports "in use by the running K3s: $busy"
else
  report fail ports "already in use: $busy" "stop what listens there (ss -ltnp | grep -E ':(${busy// /|}) '), or choose another nodePort"
fi

# --- swap and cgroups ------------------------------------------------------------------------------------------
swap_kib="$(awk 'NR>1 {s+=$3} END {print s+0}' /proc/swaps 2>/dev/null || echo 0)"
if [ "$swap_kib" -gt 0 ]; then
  report warn swap "$((swap_kib / 1024)) MiB of swap on (K3s runs with failSwapOn=false; pods get no swap, the host may)" \
    "swapoff -a and remove it from /etc/fstab (on Jetson: systemctl disable nvzramconfig) for predictable memory pressure"
else
  report ok swap "off"
fi
if [ -r /sys/fs/cgroup/cgroup.controllers ]; then
  ctrls="$(cat /sys/fs/cgroup/cgroup.controllers)"
  missing=""
  for c in cpu memory pids; do case " $ctrls " in *" $c "*) ;; *) missing="${missing:+$missing }$c" ;; esac; done
  if [ -n "$missing" ]; then
    report fail cgroup "cgroup v2 without controller(s): $missing" "enable them on the kernel command line (e.g. cgroup_enable=memory) and reboot"
  else
    report ok cgroup "cgroup v2 ($ctrls)"
  fi
else
  mem="$(awk '$1=="memory" {print $4}' /proc/cgroups 2>/dev/null || true)"
  if [ "$CGROUP_V2_REQUIRED" = true ]; then
    report fail cgroup "cgroup v1: the kubelet of Kubernetes 1.35+ refuses to start on it (failCgroupV1)" \
      "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line), or pin k3sVersion below v1.35"
  elif [ "$mem" != 1 ]; then
    report fail cgroup "cgroup v1 without the memory controller" "add cgroup_enable=memory cgroup_memory=1 to the kernel command line and reboot"
  else
    report ok cgroup "cgroup v1 with memory"
  fi
fi
