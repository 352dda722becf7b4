#!/usr/bin/env bash
# Verifies the NVIDIA driver for this SKU, makes sure the NVIDIA Container Toolkit is installed (never downgraded),
# and wires K3s's embedded containerd to the nvidia runtime through K3s's own template (never /etc/containerd):
# `config-v3.toml.tmpl` (containerd 2 schema) for K3s releases that bundle containerd 2, `config.toml.tmpl`
# (version-2 schema) for older ones. Runs before K3s is installed (K3s detects runtimes only at start); if the
# pinned K3s already runs, it is restarted and the rendered config.toml is checked for the nvidia runtime.
# Idempotent: a second run with the same parameters changes nothing. Every wait is bounded.
#
# forge:param SKU               SKU profile name (thor, rtx4000, p40)
# forge:param PRODUCT_MATCH     substring nvidia-smi must report in the GPU name
# forge:param DISCOVERY         device discovery the device plugin will use (nvml or tegra)
# forge:param EXPECT_GPUS       number of GPUs the stack declares for this node
# forge:param DRIVER_MIN_BRANCH lowest supported driver branch (0: none)
# forge:param DRIVER_MAX_BRANCH highest supported driver branch (0: none)
# forge:param TOOLKIT_VERSION   NVIDIA Container Toolkit version to install when missing or older
# forge:param TOOLKIT_SOURCE    apt (NVIDIA's apt repository) or jetpack (shipped with JetPack)
# forge:param K3S_VERSION       pinned K3s release: picks the containerd template file and schema
set -euo pipefail

: "${SKU:?}" "${PRODUCT_MATCH:?}" "${DISCOVERY:?}" "${EXPECT_GPUS:?}" "${DRIVER_MIN_BRANCH:?}" "${DRIVER_MAX_BRANCH:?}"
: "${TOOLKIT_VERSION:?}" "${TOOLKIT_SOURCE:?}" "${K3S_VERSION:?}"

STATE_DIR=/var/lib/forge-edge
TMPL_DIR=/var/lib/rancher/k3s/agent/etc/containerd
RENDERED="$TMPL_DIR/config.toml"
MARKER="# managed by forge-edge"
# Bounds (seconds) of everything that can wait (FORGE_* overrides exist for the tests only).
SMI_TIMEOUT=60
CURL_OPTS=(-fsSL --connect-timeout 15 --max-time 120 --retry 2)
APT_TIMEOUT=1200
APT_OPTS=(-o DPkg::Lock::Timeout=120 -o Acquire::http::Timeout=30 -o Acquire::Retries=2)
RESTART_TIMEOUT=300
RENDER_WAIT=${FORGE_RENDER_WAIT:-60}

log() { printf 'forge-edge[nvidia-runtime]: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# containerd config generation K3s renders for a release: 3 (containerd 2, config-v3.toml.tmpl) from v1.31.6,
# v1.32.2 and every v1.33+; 2 (containerd 1.7, config.toml.tmpl) before.
containerd_generation() {
  local minor patch
  [[ $1 =~ ^v1\.([0-9]+)\.([0-9]+)[+-] ]] || die "K3S_VERSION '$1' is not a K3s release such as v1.36.4+k3s1"
  minor=${BASH_REMATCH[1]} patch=${BASH_REMATCH[2]}
  if ((minor >= 33 || (minor == 32 && patch >= 2) || (minor == 31 && patch >= 6))); then echo 3; else echo 2; fi
}

# version_lt A B: A is an older dotted version than B.
version_lt() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }

# mkdirs_recorded DIR...: mkdir -p each DIR, recording the topmost directory that did not exist, so the revert
# removes exactly the directories this script created. Pass $STATE_DIR first: the record lives there.
mkdirs_recorded() {
  local target d top
  for target in "$@"; do
    d=$target top=""
    while [ ! -e "$d" ]; do
      top=$d
      d=$(dirname "$d")
    done
    [ -n "$top" ] || continue
    mkdir -p "$target"
    grep -qxF "$top" "$STATE_DIR/created-dirs" 2>/dev/null || printf '%s\n' "$top" >>"$STATE_DIR/created-dirs"
  done
}

# nvidia_rendered: the config.toml K3s rendered defines the nvidia runtime (either schema).
nvidia_rendered() {
  grep -Eq "^\[plugins\.['\"]io\.containerd\.(cri\.v1\.runtime|grpc\.v1\.cri)['\"]\.containerd\.runtimes\.['\"]?nvidia['\"]?\]" \
    "$RENDERED" 2>/dev/null
}

gen="$(containerd_generation "$K3S_VERSION")"
if [ "$gen" = 3 ]; then
  TMPL="$TMPL_DIR/config-v3.toml.tmpl" OTHER="$TMPL_DIR/config.toml.tmpl"
else
  TMPL="$TMPL_DIR/config.toml.tmpl" OTHER="$TMPL_DIR/config-v3.toml.tmpl"
fi

# --- 1. driver -----------------------------------------------------------------------------------------------
command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: install the NVIDIA driver for $SKU first"
rc=0
gpus="$(timeout "$SMI_TIMEOUT" nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap \
  --format=csv,noheader,nounits)" || rc=$?
[ "$rc" -ne 124 ] || die "nvidia-smi did not answer within ${SMI_TIMEOUT}s: the driver is hung (reboot the node)"
[ "$rc" -eq 0 ] || die "nvidia-smi failed: the NVIDIA driver is not loaded"
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

# --- 2. container toolkit: install when missing, upgrade when older than the pin, never downgrade ---------------
installed_toolkit() {
  timeout 30 nvidia-ctk --version 2>/dev/null | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n1
}
have="$(installed_toolkit || true)"
case "$TOOLKIT_SOURCE" in
  jetpack)
    [ -n "$have" ] || die "nvidia-container-toolkit is missing: it ships with JetPack (apt-get install nvidia-container)"
    # The device plugin's Tegra support needs toolkit 1.11 or newer.
    if version_lt "$have" 1.11.0; then
      die "JetPack's nvidia-container-toolkit $have is older than 1.11.0: upgrade JetPack"
    fi
    ;;
  apt)
    if [ -z "$have" ] || version_lt "$have" "$TOOLKIT_VERSION"; then
      mkdirs_recorded "$STATE_DIR"
      # The marker means "forge-edge put the toolkit on a node that had none": written before the install, so a
      # half-finished install is still removed by the uninstall; never written over a toolkit found installed.
      if [ -z "$have" ] && [ ! -e "$STATE_DIR/toolkit-installed-by-forge" ]; then
        printf 'packages\n' >"$STATE_DIR/toolkit-installed-by-forge"
      fi
      log "installing nvidia-container-toolkit $TOOLKIT_VERSION (found: ${have:-none})"
      keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
      list=/etc/apt/sources.list.d/nvidia-container-toolkit.list
      if [ ! -s "$keyring" ]; then
        curl "${CURL_OPTS[@]}" https://nvidia.github.io/libnvidia-container/gpgkey | gpg --batch --yes --dearmor -o "$keyring"
        printf '%s\n' "$keyring" >>"$STATE_DIR/toolkit-apt-files"
      fi
      if [ ! -s "$list" ]; then
        curl "${CURL_OPTS[@]}" https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
          sed "s#deb https://#deb [signed-by=$keyring] https://#g" >"$list"
        printf '%s\n' "$list" >>"$STATE_DIR/toolkit-apt-files"
      fi
      timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" update -qq
      v="$TOOLKIT_VERSION-1"
      # The toolkit packages refuse mismatched versions of each other, so all four are pinned together.
      DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends \
        "nvidia-container-toolkit=$v" "nvidia-container-toolkit-base=$v" \
        "libnvidia-container-tools=$v" "libnvidia-container1=$v"
    elif [ "$have" != "$TOOLKIT_VERSION" ]; then
      log "nvidia-container-toolkit $have is newer than the pin $TOOLKIT_VERSION: kept (never downgraded)"
    fi
    ;;
  *) die "unknown TOOLKIT_SOURCE '$TOOLKIT_SOURCE'" ;;
esac
runtime="$(command -v nvidia-container-runtime || true)"
[ -n "$runtime" ] || die "nvidia-container-runtime not found after installing the toolkit"
log "toolkit $(installed_toolkit || true), runtime $runtime"

# --- 3. K3s containerd template ------------------------------------------------------------------------------
# K3s adds the nvidia runtime itself (ExtraRuntimes) when it finds the binary where it looks (/usr/bin, the GPU
# Operator's path); the guard adds it only when it did not, so the rendered config.toml never defines the table
# twice (TOML refuses that, and containerd with it).
mkdirs_recorded "$STATE_DIR" "$TMPL_DIR"
new="$(mktemp)"
trap 'rm -f "$new"' EXIT
if [ "$gen" = 3 ]; then
  table="plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'"
else
  table='plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"'
fi
cat >"$new" <<TMPL
$MARKER for $SKU ($DISCOVERY discovery, containerd config version $gen); removed on uninstall.
{{ template "base" . }}
{{ if not (index .ExtraRuntimes "nvidia").BinaryName }}
[$table]
  runtime_type = "io.containerd.runc.v2"
[$table.options]
  BinaryName = "$runtime"
  SystemdCgroup = {{ .SystemdCgroup }}
{{ end }}
TMPL
if [ -e "$TMPL" ] && ! grep -q "^$MARKER" "$TMPL"; then
  die "$TMPL exists and was not written by forge-edge: merge it by hand or move it away"
fi
changed=false
if ! cmp -s "$new" "$TMPL"; then
  install -m 0644 "$new" "$TMPL"
  changed=true
  log "wrote $TMPL"
fi
# Our template of the other schema (an earlier K3s version): K3s would ignore or misread it.
if [ -e "$OTHER" ] && grep -q "^$MARKER" "$OTHER"; then
  rm -f "$OTHER"
  changed=true
  log "removed $OTHER (written for another K3s version)"
elif [ -e "$OTHER" ] && [ "$gen" = 3 ]; then
  log "WARNING: $OTHER is not ours and is ignored by K3s $K3S_VERSION while $TMPL exists"
fi

printf 'SKU=%s\nGPU_COUNT=%s\nTEGRA=%s\nRUNTIME=%s\nTEMPLATE=%s\n' "$SKU" "$count" "$tegra" "$runtime" "$TMPL" >"$new"
cmp -s "$new" "$STATE_DIR/runtime.env" || install -m 0644 "$new" "$STATE_DIR/runtime.env"

# --- 4. restart K3s if the pinned version runs already: runtimes are detected only at start ---------------------
# A K3s of another version is left alone: the K3s step upgrades and restarts it next, and checks the result.
if [ "$changed" = true ]; then
  running=""
  if command -v k3s >/dev/null 2>&1; then running="$(timeout 30 k3s --version 2>/dev/null | awk 'NR==1 {print $3}')"; fi
  for svc in k3s k3s-agent; do
    if systemctl is-active --quiet "$svc"; then
      if [ "$running" != "$K3S_VERSION" ]; then
        log "$svc runs K3s ${running:-unknown}, not $K3S_VERSION: the K3s step restarts it after the upgrade"
        continue
      fi
      log "restarting $svc to load the nvidia runtime"
      timeout "$RESTART_TIMEOUT" systemctl restart "$svc" || die "$svc did not restart within ${RESTART_TIMEOUT}s"
      for _ in $(seq 1 "$RENDER_WAIT"); do
        nvidia_rendered && break
        sleep 1
      done
      nvidia_rendered || die "K3s restarted, but $RENDERED has no nvidia runtime after ${RENDER_WAIT}s"
    fi
  done
fi

# The one line of stdout: what the node offers, for the stack outputs.
printf 'gpus=%s tegra=%s runtime=%s\n' "$count" "$tegra" "$runtime"
