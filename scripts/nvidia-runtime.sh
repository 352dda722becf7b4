#!/usr/bin/env bash
# Verifies the NVIDIA driver for this SKU, makes sure the NVIDIA Container Toolkit is installed, and wires K3s's
# embedded containerd to the nvidia runtime through K3s's own config.toml.tmpl (never /etc/containerd).
# Runs before K3s is installed (K3s detects runtimes only at start); if K3s already runs, it is restarted.
# Idempotent: a second run with the same parameters changes nothing.
#
# forge:param SKU               SKU profile name (thor, rtx4000, p40)
# forge:param PRODUCT_MATCH     substring nvidia-smi must report in the GPU name
# forge:param DISCOVERY         device discovery the device plugin will use (nvml or tegra)
# forge:param EXPECT_GPUS       number of GPUs the stack declares for this node
# forge:param DRIVER_MIN_BRANCH lowest supported driver branch (0: none)
# forge:param DRIVER_MAX_BRANCH highest supported driver branch (0: none)
# forge:param TOOLKIT_VERSION   NVIDIA Container Toolkit version to install when missing
# forge:param TOOLKIT_SOURCE    apt (NVIDIA's apt repository) or jetpack (shipped with JetPack)
set -euo pipefail

: "${SKU:?}" "${PRODUCT_MATCH:?}" "${DISCOVERY:?}" "${EXPECT_GPUS:?}" "${DRIVER_MIN_BRANCH:?}" "${DRIVER_MAX_BRANCH:?}"
: "${TOOLKIT_VERSION:?}" "${TOOLKIT_SOURCE:?}"

STATE_DIR=/var/lib/forge-edge
TMPL_DIR=/var/lib/rancher/k3s/agent/etc/containerd
TMPL="$TMPL_DIR/config.toml.tmpl"
MARKER="# managed by forge-edge"

log() { printf 'forge-edge[nvidia-runtime]: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- 1. driver -----------------------------------------------------------------------------------------------
command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: install the NVIDIA driver for $SKU first"
gpus="$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader,nounits)" ||
  die "nvidia-smi failed: the NVIDIA driver is not loaded"
count="$(printf '%s\n' "$gpus" | grep -c .)"
[ "$count" -ge "$EXPECT_GPUS" ] || die "found $count GPU(s), the stack declares $EXPECT_GPUS"
while IFS=, read -r name mem driver cc; do
  name="${name# }" mem="${mem# }" driver="${driver# }" cc="${cc# }"
  case "$name" in
    *"$PRODUCT_MATCH"*) ;;
    *) die "GPU '$name' is not a $SKU GPU (expected a name containing '$PRODUCT_MATCH'): wrong stack for this node?" ;;
  esac
  branch="${driver%%.*}"
  if [ "$DRIVER_MIN_BRANCH" -gt 0 ] && [ "$branch" -lt "$DRIVER_MIN_BRANCH" ]; then
    die "driver $driver is too old for $name: R$DRIVER_MIN_BRANCH or newer is required"
  fi
  if [ "$DRIVER_MAX_BRANCH" -gt 0 ] && [ "$branch" -gt "$DRIVER_MAX_BRANCH" ]; then
    die "driver $driver does not support $name: R$DRIVER_MAX_BRANCH is the last branch for this GPU"
  fi
  log "GPU: $name, ${mem} MiB, driver $driver, compute $cc"
done <<<"$gpus"

tegra=false
if [ -e /etc/nv_tegra_release ] || printf '%s' "$gpus" | grep -q 'Thor\|(nvgpu)'; then tegra=true; fi
if [ "$DISCOVERY" = tegra ] && [ "$tegra" != true ]; then die "$SKU expects a Tegra platform, this node is not one"; fi
if [ "$DISCOVERY" = nvml ] && [ "$tegra" = true ]; then die "this node is Tegra, but $SKU expects a discrete GPU"; fi

# --- 2. container toolkit ------------------------------------------------------------------------------------
installed_toolkit() { nvidia-ctk --version 2>/dev/null | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n1; }
have="$(installed_toolkit || true)"
if [ -z "$have" ] || { [ "$TOOLKIT_SOURCE" = apt ] && [ "$have" != "$TOOLKIT_VERSION" ]; }; then
  case "$TOOLKIT_SOURCE" in
    jetpack)
      die "nvidia-container-toolkit is missing: it ships with JetPack (apt-get install nvidia-container)" ;;
    apt)
      log "installing nvidia-container-toolkit $TOOLKIT_VERSION (found: ${have:-none})"
      keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
      list=/etc/apt/sources.list.d/nvidia-container-toolkit.list
      if [ ! -s "$keyring" ]; then
        curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --dearmor -o "$keyring"
      fi
      if [ ! -s "$list" ]; then
        curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
          sed "s#deb https://#deb [signed-by=$keyring] https://#g" >"$list"
      fi
      apt-get update -qq
      v="$TOOLKIT_VERSION-1"
      # The toolkit packages refuse mismatched versions of each other, so all four are pinned together.
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "nvidia-container-toolkit=$v" "nvidia-container-toolkit-base=$v" \
        "libnvidia-container-tools=$v" "libnvidia-container1=$v"
      mkdir -p "$STATE_DIR" && touch "$STATE_DIR/toolkit-installed-by-forge" ;;
    *) die "unknown TOOLKIT_SOURCE '$TOOLKIT_SOURCE'" ;;
  esac
fi
runtime="$(command -v nvidia-container-runtime || true)"
[ -n "$runtime" ] || die "nvidia-container-runtime not found after installing the toolkit"
log "toolkit $(installed_toolkit), runtime $runtime"

# --- 3. K3s containerd template ------------------------------------------------------------------------------
# K3s adds the nvidia runtime itself when it finds it under /usr/bin; the guard adds it only when it did not
# (toolkit elsewhere), so the rendered config.toml never holds the table twice.
mkdir -p "$TMPL_DIR" "$STATE_DIR"
new="$(mktemp)"
trap 'rm -f "$new"' EXIT
cat >"$new" <<TMPL
$MARKER for $SKU ($DISCOVERY discovery); removed on uninstall.
{{ template "base" . }}
{{ if not (index .ExtraRuntimes "nvidia").BinaryName }}
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'.options]
  BinaryName = "$runtime"
  SystemdCgroup = {{ .SystemdCgroup }}
{{ end }}
TMPL
changed=false
if [ -e "$TMPL" ] && ! grep -q "^$MARKER" "$TMPL"; then
  die "$TMPL exists and was not written by forge-edge: merge it by hand or move it away"
fi
if ! cmp -s "$new" "$TMPL"; then
  install -m 0644 "$new" "$TMPL"
  changed=true
  log "wrote $TMPL"
fi

printf 'SKU=%s\nGPU_COUNT=%s\nTEGRA=%s\nRUNTIME=%s\n' "$SKU" "$count" "$tegra" "$runtime" >"$new"
cmp -s "$new" "$STATE_DIR/runtime.env" || install -m 0644 "$new" "$STATE_DIR/runtime.env"

# --- 4. restart K3s if it runs already: runtimes are detected only at start ------------------------------------
if [ "$changed" = true ]; then
  for svc in k3s k3s-agent; do
    if systemctl is-active --quiet "$svc"; then
      log "restarting $svc to load the nvidia runtime"
      systemctl restart "$svc"
    fi
  done
fi

# The one line of stdout: what the node offers, for the stack outputs.
printf 'gpus=%s tegra=%s runtime=%s\n' "$count" "$tegra" "$runtime"
