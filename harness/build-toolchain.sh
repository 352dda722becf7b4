#!/usr/bin/env bash
# Builds the forge-edge toolchain (Pulumi CLI + Node language host, providers, a local
# Kubernetes control plane, etcd and kwok) from Go modules, and writes $CACHE/toolchain.json.
#
# Usage: harness/build-toolchain.sh [--only GROUP[,GROUP...]] [--check] [--verify] [--list]
#   --only    build only these groups (also: FORGE_EDGE_ONLY="etcd,kwok"); default: all
#   --check   build nothing; exit 0 only if every selected group is built and up to date
#   --verify  after building (or checking), run each selected binary's version command
#   --list    print the groups and exit
#
# Groups (build order): etcd kwok kube pulumi language-nodejs command kubernetes random checker node netpol
#   etcd             etcd                                  (harness/toolchain/etcd)
#   kwok             kwok + kwok Stage YAMLs               (harness/toolchain/kwok)
#   kube             kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (harness/toolchain/kube)
#   pulumi           pulumi CLI -> $CACHE/bin/pulumi-<ver>/bin/pulumi  (harness/toolchain/pulumi)
#   language-nodejs  pulumi-language-nodejs, linked next to bin/pulumi (harness/toolchain/language-nodejs)
#   command          pulumi-resource-command v1.2.1, the real provider built from shared/third_party, installed as a plugin
#   kubernetes       pulumi-resource-kubernetes, installed as a plugin (harness/toolchain/kubernetes)
#   random           pulumi-resource-random (bridged; own mapping), installed as a plugin (harness/toolchain/random)
#   checker          forge-edge-checker: K3s's containerd rendering, containerd's config loader, the device
#                    plugin's config parser; its Go tests run first (harness/toolchain/checker)
# The real node's groups (issue 11; the realnode drills and kubelet-mode sites need them):
#   node             real node components (issue 11): kubelet, kube-proxy, a device-plugin stand-in, containerd, ctr,
#                    runc shim, runc (cgo, needs libseccomp-dev), CNI plugins, and OCI image tarballs: pause, fake
#                    inference, the device-plugin and DCGM-exporter stand-ins, local-path-provisioner, busybox (Debian's
#                    busybox-static via apt-get download), K3s's air-gap tarball of pause + local-path + busybox
#                    (harness/toolchain/node, harness/images) -> $CACHE/bin/node-<KUBE_VERSION>-<NODE_IMAGES_VERSION>/
#   netpol           NetworkPolicy on the real node (issue 11): k3s-netpol (kube-router v2.1.0's controller as K3s's
#                    agent runs it), CoreDNS + netprobe images (harness/toolchain/netpol) -> $CACHE/bin/netpol-.../
# (The upstream random provider module and the current Node language host are refused by the Go module
#  proxy; see harness/versions.env for what is built instead. The command provider's module is refused too:
#  it is built from its pristine source archive in shared/third_party.)
#
# Environment:
#   FORGE_EDGE_CACHE   cache root (default $HOME/.cache/forge-edge); binaries go to
#                      $CACHE/bin/<tool>-<version>/, providers are installed into $CACHE/pulumi-home
#   FORGE_EDGE_ONLY    same as --only
#   FORGE_EDGE_GO_P    go build -p (default 2)
#
# Idempotent: each group writes a stamp (fingerprint of its wrapper module, ldflags and Go
# version) next to its binaries; a warm re-run only prints "up to date" lines.
# Nothing is written inside the repository: wrapper modules are copied to $CACHE/work/ and built there.
set -euo pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WRAPPERS="$HARNESS_DIR/toolchain"
# shellcheck source-path=SCRIPTDIR source=versions.env disable=SC1091
. "$HARNESS_DIR/versions.env"

CACHE=${FORGE_EDGE_CACHE:-$HOME/.cache/forge-edge}
BIN_ROOT="$CACHE/bin"
WORK_ROOT="$CACHE/work"
PULUMI_HOME_DIR="$CACHE/pulumi-home"
TOOLCHAIN_JSON="$CACHE/toolchain.json"
ALL_GROUPS=(etcd kwok kube pulumi language-nodejs command kubernetes random checker node netpol)

ONLY=${FORGE_EDGE_ONLY:-}
CHECK=0
VERIFY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY=${2:?--only needs a value}; shift 2 ;;
    --only=*) ONLY=${1#--only=}; shift ;;
    --check) CHECK=1; shift ;;
    --verify) VERIFY=1; shift ;;
    --list) printf '%s\n' "${ALL_GROUPS[@]}"; exit 0 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    [a-z]*) ONLY="${ONLY:+$ONLY,}$1"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

SELECTED=()
if [ -z "$ONLY" ]; then
  SELECTED=("${ALL_GROUPS[@]}")
else
  IFS=', ' read -r -a wanted <<<"$ONLY"
  for g in "${ALL_GROUPS[@]}"; do
    for w in "${wanted[@]}"; do [ "$g" = "$w" ] && SELECTED+=("$g"); done
  done
  for w in "${wanted[@]}"; do
    case " ${ALL_GROUPS[*]} " in *" $w "*) continue ;; esac
    echo "unknown group: $w (groups: ${ALL_GROUPS[*]})" >&2; exit 2
  done
fi

START_TS=$(date +%s)
log() { printf '[%s +%4ss] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - START_TS ))" "$*"; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || { echo "build-toolchain.sh: 'go' (>= 1.26) is not on PATH (it lives in /usr/local/go/bin on the go machine)" >&2; exit 1; }
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -mod=readonly -p=${FORGE_EDGE_GO_P:-2}"
GO_VERSION=$(go env GOVERSION)
GO_MODCACHE=$(go env GOMODCACHE)

# ---------------------------------------------------------------------------------------------
# helpers

# fingerprint GROUP EXTRA...: hash of the group's wrapper files, the Go version and EXTRA (ldflags).
fingerprint() {
  local group=$1; shift
  {
    printf '%s\n' "$GO_VERSION" "$@"
    (cd "$WRAPPERS/$group" && find . -type f \( -name 'go.mod' -o -name 'go.sum' -o -name '*.go' \) -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -d' ' -f1
}

# up_to_date DIR FP OUT...: the stamp in DIR matches FP and every output exists.
up_to_date() {
  local dir=$1 fp=$2; shift 2
  [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$fp" ] || return 1
  local o
  for o in "$@"; do [ -s "$dir/$o" ] || return 1; done
}

# prepare_work GROUP: fresh copy of the wrapper module under $CACHE/work/GROUP; prints its path.
prepare_work() {
  local group=$1 work="$WORK_ROOT/$1"
  [ -f "$WRAPPERS/$group/go.mod" ] || die "wrapper module $WRAPPERS/$group/go.mod is missing"
  rm -rf "$work"
  mkdir -p "$work"
  cp -R "$WRAPPERS/$group/." "$work/"
  printf '%s\n' "$work"
}

# module_dir WORK MODULE: the module cache directory of MODULE as resolved by the wrapper in WORK.
module_dir() {
  (cd "$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2")
}

# go_build WORK OUTFILE PKG LDFLAGS [TAGS]
go_build() {
  local work=$1 out=$2 pkg=$3 ldflags=$4 tags=${5:-}
  local t0; t0=$(date +%s)
  log "  go build $pkg -> $(basename "$out")"
  mkdir -p "$(dirname "$out")"
  (cd "$work" && go build -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$out" "$pkg")
  log "  built $(basename "$out") in $(( $(date +%s) - t0 ))s ($(du -h "$out" | cut -f1))"
}

# build_group GROUP DIR FP PREPARE_FN TAGS LDFLAGS OUT=PKG...
# Builds every OUT=PKG into DIR (via DIR.tmp, then renamed) unless DIR's stamp matches FP.
# PREPARE_FN (optional) runs as `PREPARE_FN WORK TMPDIR` before the builds; an OUT with an empty
# PKG ("file=") is a file that PREPARE_FN writes into TMPDIR.
MISSING=()
build_group() {
  local group=$1 dir=$2 fp=$3 prepare=$4 tags=$5 ldflags=$6; shift 6
  local outs=() spec
  for spec in "$@"; do outs+=("${spec%%=*}"); done
  if up_to_date "$dir" "$fp" "${outs[@]}"; then
    log "$group: up to date ($dir)"
    return 0
  fi
  if [ "$CHECK" = 1 ]; then
    log "$group: NOT built or out of date ($dir)"
    MISSING+=("$group")
    return 0
  fi
  local t0 work; t0=$(date +%s)
  log "$group: building into $dir"
  work=$(prepare_work "$group")
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  if [ -n "$prepare" ]; then "$prepare" "$work" "$dir.tmp"; fi
  for spec in "$@"; do
    [ -n "${spec#*=}" ] || continue
    go_build "$work" "$dir.tmp/${spec%%=*}" "${spec#*=}" "$ldflags" "$tags"
  done
  printf '%s\n' "$fp" >"$dir.tmp/.stamp"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  log "$group: done in $(( $(date +%s) - t0 ))s"
}

# ---------------------------------------------------------------------------------------------
# groups

ETCD_DIR="$BIN_ROOT/etcd-$ETCD_VERSION"
group_etcd() {
  local ld="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_GIT_COMMIT:-unknown}"
  build_group etcd "$ETCD_DIR" "$(fingerprint etcd "$ld")" "" "" "$ld" \
    "etcd=$ETCD_MODULE"
}

KWOK_DIR="$BIN_ROOT/kwok-$KWOK_VERSION"
# Stage objects shipped inside the kwok module (kustomize/stage/...); kwok >= v0.8.0 has no built-in stages.
KWOK_STAGE_FILES=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)
KWOK_STAGE_FILES_NO_LEASE=(node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)
write_stages() { # WORK OUT FILE...
  local work=$1 out=$2 src f first=1; shift 2
  src="$(module_dir "$work" "$KWOK_MODULE")/kustomize/stage"
  {
    echo "# kwok Stage objects copied from $KWOK_MODULE@$KWOK_VERSION kustomize/stage (multi-document)"
    for f in "$@"; do
      [ "$first" = 1 ] || echo "---"
      first=0
      echo "# $f"
      cat "$src/$f"
    done
  } >"$out"
}
prepare_kwok() {
  write_stages "$1" "$2/kwok-stages.yaml" "${KWOK_STAGE_FILES[@]}"
  write_stages "$1" "$2/kwok-stages-no-lease.yaml" "${KWOK_STAGE_FILES_NO_LEASE[@]}"
}
group_kwok() {
  local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KWOK_KUBE_VERSION"
  build_group kwok "$KWOK_DIR" "$(fingerprint kwok "$ld" "${KWOK_STAGE_FILES[*]}" "${KWOK_STAGE_FILES_NO_LEASE[*]}")" \
    prepare_kwok "" "$ld" "kwok=$KWOK_MODULE/cmd/kwok" "kwok-stages.yaml=" "kwok-stages-no-lease.yaml="
}

KUBE_DIR="$BIN_ROOT/kubernetes-$KUBE_VERSION"
group_kube() {
  local v=${KUBE_VERSION#v} ld="-s -w" p
  local major=${v%%.*} minor; minor=${v#*.}; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitCommit=${KUBE_GIT_COMMIT:-unknown} -X $p.gitTreeState=clean -X $p.buildDate=$KUBE_BUILD_DATE"
  done
  build_group kube "$KUBE_DIR" "$(fingerprint kube "$ld")" "" "selinux,notest" "$ld" \
    "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver" \
    "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager" \
    "kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler" \
    "kubectl=k8s.io/kubernetes/cmd/kubectl"
}

PULUMI_ROOT="$BIN_ROOT/pulumi-$PULUMI_VERSION"
PULUMI_BIN="$PULUMI_ROOT/bin/pulumi"
group_pulumi() {
  local ld="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"
  build_group pulumi "$PULUMI_ROOT" "$(fingerprint pulumi "$ld")" "" "osusergo,grpcnotrace" "$ld" \
    "bin/pulumi=github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
}

# install_plugin NAME VERSION BINARY: `pulumi plugin install resource NAME VERSION --file BINARY`
# into $CACHE/pulumi-home unless the installed binary is already identical.
install_plugin() {
  local name=$1 version=$2 binary=$3
  local installed="$PULUMI_HOME_DIR/plugins/resource-$name-v$version/pulumi-resource-$name"
  if [ -x "$installed" ] && cmp -s "$installed" "$binary"; then
    log "$name: plugin $name v$version up to date in $PULUMI_HOME_DIR"
    return 0
  fi
  if [ "$CHECK" = 1 ]; then
    log "$name: plugin $name v$version NOT installed in $PULUMI_HOME_DIR"
    MISSING+=("plugin:$name")
    return 0
  fi
  [ -x "$PULUMI_BIN" ] || die "$name: the Pulumi CLI ($PULUMI_BIN) is needed to install the plugin; build group pulumi first"
  mkdir -p "$PULUMI_HOME_DIR"
  log "$name: installing plugin $name v$version into $PULUMI_HOME_DIR"
  PULUMI_HOME="$PULUMI_HOME_DIR" PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
    "$PULUMI_BIN" plugin install resource "$name" "$version" --file "$binary" --reinstall
  if ! { [ -x "$installed" ] && cmp -s "$installed" "$binary"; }; then
    die "$name: plugin install did not produce $installed"
  fi
}

NODEJS_HOST_DIR="$BIN_ROOT/pulumi-language-nodejs-$PULUMI_LANGUAGE_NODEJS_VERSION"
group_language_nodejs() {
  local ld="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_LANGUAGE_NODEJS_VERSION"
  build_group language-nodejs "$NODEJS_HOST_DIR" "$(fingerprint language-nodejs "$ld")" "" "osusergo" "$ld" \
    "pulumi-language-nodejs=$PULUMI_LANGUAGE_NODEJS_PKG"
  # The engine looks for bundled language hosts next to the (symlink-resolved) pulumi binary.
  local link="$PULUMI_ROOT/bin/pulumi-language-nodejs" target="$NODEJS_HOST_DIR/pulumi-language-nodejs"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
    log "language-nodejs: link up to date ($link)"
  elif [ "$CHECK" = 1 ]; then
    log "language-nodejs: link $link missing"
    MISSING+=("language-nodejs-link")
  elif [ -d "$PULUMI_ROOT/bin" ]; then
    ln -sfn "$target" "$link"
    log "language-nodejs: linked $link -> $target"
  else
    log "language-nodejs: WARNING: $PULUMI_ROOT/bin does not exist yet (build group pulumi, then re-run)"
  fi
}

COMMAND_PROVIDER_DIR="$BIN_ROOT/pulumi-resource-command-v$COMMAND_PROVIDER_VERSION"
# The real provider, built from the pristine upstream archive in shared/third_party (the module proxy does not
# serve it). The stamp keys on the archive's sha256, so a different archive rebuilds; nothing is patched.
THIRD_PARTY_DIR=${FORGE_EDGE_THIRD_PARTY:-$(cd "$HARNESS_DIR/../.." && pwd)/shared/third_party}
group_command() {
  local archive="$THIRD_PARTY_DIR/$COMMAND_PROVIDER_ARCHIVE"
  local ld="-s -w -X github.com/pulumi/pulumi-command/provider/pkg/version.Version=v$COMMAND_PROVIDER_VERSION"
  local out="$COMMAND_PROVIDER_DIR/pulumi-resource-command" fp sum
  [ -f "$archive" ] || die "command: $archive is missing (set FORGE_EDGE_THIRD_PARTY to the folder holding it)"
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  [ "$sum" = "$COMMAND_PROVIDER_ARCHIVE_SHA256" ] ||
    die "command: $archive has sha256 $sum, expected $COMMAND_PROVIDER_ARCHIVE_SHA256 (harness/versions.env)"
  fp=$(printf '%s\n' "$GO_VERSION" "$ld" "$sum" | sha256sum | cut -d' ' -f1)
  if up_to_date "$COMMAND_PROVIDER_DIR" "$fp" pulumi-resource-command; then
    log "command: up to date ($COMMAND_PROVIDER_DIR)"
  elif [ "$CHECK" = 1 ]; then
    log "command: NOT built or out of date ($COMMAND_PROVIDER_DIR)"
    MISSING+=(command)
  else
    local t0 work="$WORK_ROOT/command"; t0=$(date +%s)
    log "command: building the real provider v$COMMAND_PROVIDER_VERSION from $archive"
    rm -rf "$work" "$COMMAND_PROVIDER_DIR.tmp"
    mkdir -p "$work" "$COMMAND_PROVIDER_DIR.tmp"
    tar xzf "$archive" -C "$work"
    go_build "$work/$COMMAND_PROVIDER_SRC_DIR/provider" "$COMMAND_PROVIDER_DIR.tmp/pulumi-resource-command" \
      ./cmd/pulumi-resource-command "$ld"
    printf '%s\n' "$fp" >"$COMMAND_PROVIDER_DIR.tmp/.stamp"
    rm -rf "$COMMAND_PROVIDER_DIR" "$work"
    mv "$COMMAND_PROVIDER_DIR.tmp" "$COMMAND_PROVIDER_DIR"
    log "command: done in $(( $(date +%s) - t0 ))s"
  fi
  [ -s "$out" ] || return 0
  install_plugin command "$COMMAND_PROVIDER_VERSION" "$out"
}

K8S_PROVIDER_DIR="$BIN_ROOT/pulumi-resource-kubernetes-v$K8S_PROVIDER_VERSION"
prepare_kubernetes() {
  local work=$1 src
  src="$(module_dir "$work" "$K8S_PROVIDER_MODULE")/cmd/pulumi-resource-kubernetes"
  cp "$src/schema.json" "$src/terraform-mapping.json" "$work/"
  chmod u+w "$work/schema.json" "$work/terraform-mapping.json"
  (cd "$work" && go run gen.go "$K8S_PROVIDER_VERSION")
}
group_kubernetes() {
  local ld="-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_VERSION"
  build_group kubernetes "$K8S_PROVIDER_DIR" "$(fingerprint kubernetes "$ld")" prepare_kubernetes "" "$ld" \
    "pulumi-resource-kubernetes=."
  install_plugin kubernetes "$K8S_PROVIDER_VERSION" "$K8S_PROVIDER_DIR/pulumi-resource-kubernetes"
}

RANDOM_PROVIDER_DIR="$BIN_ROOT/pulumi-resource-random-v$RANDOM_PROVIDER_VERSION"
RANDOM_LDFLAGS="-s -w -X forge-edge/toolchain/random/provider.Version=$RANDOM_PROVIDER_VERSION"
prepare_random() {
  # The schema is generated from the mapping with the bridge's tfgen (pulumi-random's own
  # schema.json is not available), then versioned by gen.go.
  local work=$1
  go_build "$work" "$work/pulumi-tfgen-random" ./cmd/pulumi-tfgen-random "$RANDOM_LDFLAGS"
  log "  tfgen schema -> cmd/pulumi-resource-random/schema.json"
  (cd "$work" && ./pulumi-tfgen-random schema --skip-docs --out cmd/pulumi-resource-random >"$work/tfgen.log" 2>&1) \
    || { cat "$work/tfgen.log" >&2; die "random: tfgen failed"; }
  (cd "$work/cmd/pulumi-resource-random" && go run ../../gen.go "$RANDOM_PROVIDER_VERSION")
}
group_random() {
  build_group random "$RANDOM_PROVIDER_DIR" "$(fingerprint random "$RANDOM_LDFLAGS")" prepare_random "" "$RANDOM_LDFLAGS" \
    "pulumi-resource-random=./cmd/pulumi-resource-random"
  install_plugin random "$RANDOM_PROVIDER_VERSION" "$RANDOM_PROVIDER_DIR/pulumi-resource-random"
}

CHECKER_DIR="$BIN_ROOT/forge-edge-checker-$CHECKER_VERSION"
CHECKER_LDFLAGS="-s -w -X main.containerdVersion=$CHECKER_CONTAINERD_VERSION -X main.devicePluginVersion=$CHECKER_DEVICE_PLUGIN_VERSION"
# The device plugin's api/config/v1 comes from its pristine archive in shared/third_party (the module proxy
# refuses the module); go.mod replaces the module with ./third_party/<src dir>, unpacked here. Then the
# checker's own Go tests run: a checker that accepts a broken template or config is not installed.
checker_archive() {
  local archive="${THIRD_PARTY_DIR:-${FORGE_EDGE_THIRD_PARTY:-$(cd "$HARNESS_DIR/../.." && pwd)/shared/third_party}}/$CHECKER_DEVICE_PLUGIN_ARCHIVE" sum
  # (prints the path: errors go to stderr)
  if [ ! -f "$archive" ] && [ -f "$CACHE/third_party/$CHECKER_DEVICE_PLUGIN_ARCHIVE" ]; then
    # Interim: the same pristine archive (sha256-checked below) left in the cache by hand; a new machine lacks it.
    log "checker: WARNING: $archive is missing; using $CACHE/third_party/$CHECKER_DEVICE_PLUGIN_ARCHIVE" >&2
    archive="$CACHE/third_party/$CHECKER_DEVICE_PLUGIN_ARCHIVE"
  fi
  [ -f "$archive" ] || die "checker: $archive is missing (set FORGE_EDGE_THIRD_PARTY to the folder holding it)" >&2
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  [ "$sum" = "$CHECKER_DEVICE_PLUGIN_ARCHIVE_SHA256" ] ||
    die "checker: $archive has sha256 $sum, expected $CHECKER_DEVICE_PLUGIN_ARCHIVE_SHA256 (harness/versions.env)" >&2
  printf '%s\n' "$archive"
}
prepare_checker() {
  local work=$1 archive t0
  archive=$(checker_archive) || exit 1
  rm -rf "$work/third_party"
  mkdir -p "$work/third_party"
  tar xzf "$archive" -C "$work/third_party"
  [ -f "$work/third_party/$CHECKER_DEVICE_PLUGIN_SRC_DIR/go.mod" ] || die "checker: $archive holds no $CHECKER_DEVICE_PLUGIN_SRC_DIR/go.mod"
  t0=$(date +%s)
  log "  go test (the checker's own tests)"
  # -trimpath like go_build, so the build below reuses every compiled package and only links.
  (cd "$work" && go test -trimpath -count=1 ./...) || die "checker: its Go tests fail"
  log "  tests passed in $(( $(date +%s) - t0 ))s"
}
group_checker() {
  local archive sum
  archive=$(checker_archive) || exit 1
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  build_group checker "$CHECKER_DIR" "$(fingerprint checker "$CHECKER_LDFLAGS" "$sum")" prepare_checker "" \
    "$CHECKER_LDFLAGS -X 'main.k3sSource=$CHECKER_K3S_SOURCE'" "forge-edge-checker=."
}

NODE_DIR="$BIN_ROOT/node-$KUBE_VERSION-$NODE_IMAGES_VERSION"
NODE_CNI_PLUGINS=(ipam/host-local main/bridge main/loopback meta/portmap)
# What K3s bundles below the API, from three wrapper modules (kube/, containerd/ under harness/toolchain/node) and
# harness/images; the stamp keys on all of them and the versions. Built with go_build into DIR.tmp, then renamed.
group_node() {
  local v=${KUBE_VERSION#v} kld="-s -w" p major minor fp images_fp t0 work d cld archive busybox applet
  major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    kld+=" -X $p.gitCommit=${KUBE_GIT_COMMIT:-unknown} -X $p.gitTreeState=clean -X $p.buildDate=$KUBE_BUILD_DATE"
  done
  p=github.com/containerd/containerd/v2/version
  cld="-s -w -X $p.Version=$NODE_CONTAINERD_VERSION -X $p.Revision=unknown -X $p.Package=github.com/containerd/containerd/v2"
  images_fp=$(cd "$HARNESS_DIR/images" && find . -type f \( -name go.mod -o -name '*.go' \) -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  fp=$(fingerprint node "$kld" "$cld" "$images_fp" "$NODE_RUNC_TAGS" "$NODE_CONTAINERD_TAGS" "$NODE_PAUSE_IMAGE" \
    "$NODE_INFERENCE_IMAGE" "$CHECKER_DEVICE_PLUGIN_ARCHIVE_SHA256" "$NODE_LOCAL_PATH_IMAGE" "$NODE_BUSYBOX_IMAGE" \
    "$NODE_BUSYBOX_DEB_VERSION" "$NODE_DEVICE_PLUGIN_IMAGE" "$NODE_DCGM_EXPORTER_IMAGE")
  local outs=(kubelet kube-proxy gpu-device-plugin containerd ctr containerd-shim-runc-v2 runc ocitar images/pause.tar
    images/inference.tar images/device-plugin.tar images/dcgm-exporter.tar images/local-path-provisioner.tar
    images/busybox.tar images/k3s-airgap-images-amd64.tar)
  for p in "${NODE_CNI_PLUGINS[@]}"; do outs+=("cni/${p#*/}"); done
  if up_to_date "$NODE_DIR" "$fp" "${outs[@]}"; then log "node: up to date ($NODE_DIR)"; return 0; fi
  if [ "$CHECK" = 1 ]; then log "node: NOT built or out of date ($NODE_DIR)"; MISSING+=(node); return 0; fi
  [ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ] || [ -f /usr/lib/libseccomp.a ] ||
    die "node: runc is built static with seccomp and needs libseccomp.a: apt-get install libseccomp-dev"
  command -v gcc >/dev/null || die "node: runc needs cgo (gcc)"
  archive=$(checker_archive) || exit 1
  t0=$(date +%s)
  log "node: building into $NODE_DIR"
  work="$WORK_ROOT/node" # (several modules, no go.mod at the top: prepare_work does not apply)
  rm -rf "$work"; mkdir -p "$work"
  cp -R "$WRAPPERS/node/." "$work/"
  cp -R "$HARNESS_DIR/images" "$work/images"
  # The device-plugin stand-in parses its config with NVIDIA's api/config/v1 (the checker's pinned archive).
  mkdir -p "$work/gpu-device-plugin/third_party"
  tar xzf "$archive" -C "$work/gpu-device-plugin/third_party"
  d="$NODE_DIR.tmp"
  rm -rf "$d"; mkdir -p "$d/cni" "$d/images"
  # The images' own Go tests (ocitar, the stand-ins' parsers) gate the build, as the checker's do.
  (cd "$work/gpu-device-plugin" && go test -trimpath -count=1 ./...) || die "node: the device-plugin stand-in's tests fail"
  (cd "$work/images" && go test -trimpath -count=1 ./...) || die "node: the images' tests fail"
  go_build "$work/kube" "$d/kubelet" k8s.io/kubernetes/cmd/kubelet "$kld" "selinux,notest"
  go_build "$work/kube" "$d/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy "$kld" "selinux,notest"
  go_build "$work/gpu-device-plugin" "$d/gpu-device-plugin" . "-s -w"
  for p in containerd ctr containerd-shim-runc-v2; do
    go_build "$work/containerd" "$d/$p" "github.com/containerd/containerd/v2/cmd/$p" "$cld" "$NODE_CONTAINERD_TAGS"
  done
  CGO_ENABLED=1 go_build "$work/containerd" "$d/runc" github.com/opencontainers/runc \
    "-s -w -X main.version=${NODE_RUNC_VERSION#v} -extldflags -static" "$NODE_RUNC_TAGS"
  for p in "${NODE_CNI_PLUGINS[@]}"; do
    go_build "$work/containerd" "$d/cni/${p#*/}" "github.com/containernetworking/plugins/plugins/$p" \
      "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$NODE_CNI_PLUGINS_VERSION"
  done
  CGO_ENABLED=0 go_build "$work/local-path" "$work/bin/local-path-provisioner" github.com/rancher/local-path-provisioner \
    "-s -w -X main.VERSION=$NODE_LOCAL_PATH_VERSION"
  for p in pause inference dcgm-exporter ocitar; do go_build "$work/images" "$work/bin/$p" "./$p" "-s -w"; done
  # busybox for the local-path helper pod (it runs `sh -c` scripts): Debian's static build, downloaded into the
  # cache by apt (never installed), its applets as symlinks where busybox --list-full puts them.
  mkdir -p "$CACHE/debs"
  busybox="$CACHE/debs/busybox-static_${NODE_BUSYBOX_DEB_VERSION//:/%3a}_amd64.deb"
  if [ ! -s "$busybox" ]; then
    # A fresh machine may have no package lists yet (setup.sh updates them only when it installs something).
    (cd "$CACHE/debs" && apt-get download "busybox-static=$NODE_BUSYBOX_DEB_VERSION") ||
      { apt-get update -qq && (cd "$CACHE/debs" && apt-get download "busybox-static=$NODE_BUSYBOX_DEB_VERSION"); } ||
      die "node: apt-get download busybox-static=$NODE_BUSYBOX_DEB_VERSION failed (is that version still in the archive? see harness/versions.env)"
  fi
  mkdir -p "$work/busybox" && dpkg-deb -x "$busybox" "$work/busybox"
  local links=()
  for applet in $("$work/busybox/bin/busybox" --list-full); do
    [ "$applet" = bin/busybox ] || links+=(-symlink "/$applet=/bin/busybox")
  done
  local tar="$work/bin/ocitar" env=(-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  "$tar" -bin "$work/bin/pause" -o "$d/images/pause.tar" -name "$NODE_PAUSE_IMAGE"
  "$tar" -bin "$work/bin/inference" -o "$d/images/inference.tar" -name "$NODE_INFERENCE_IMAGE"
  "$tar" -bin "$d/gpu-device-plugin" -path /usr/bin/nvidia-device-plugin -o "$d/images/device-plugin.tar" \
    -name "$NODE_DEVICE_PLUGIN_IMAGE" "${env[@]}"
  "$tar" -bin "$work/bin/dcgm-exporter" -path /usr/bin/dcgm-exporter -o "$d/images/dcgm-exporter.tar" \
    -name "$NODE_DCGM_EXPORTER_IMAGE" "${env[@]}"
  # K3s's manifest runs `local-path-provisioner start ...` (a command found on PATH).
  "$tar" -bin "$work/bin/local-path-provisioner" -path /usr/bin/local-path-provisioner -entrypoint none \
    -o "$d/images/local-path-provisioner.tar" -name "$NODE_LOCAL_PATH_IMAGE" "${env[@]}"
  "$tar" -bin "$work/busybox/bin/busybox" -path /bin/busybox -entrypoint none -cmd sh "${links[@]}" \
    -o "$d/images/busybox.tar" -name "$NODE_BUSYBOX_IMAGE" "${env[@]}"
  # One tarball of K3s's own images, as k3s-airgap-images-amd64.tar carries them (harness/nodeImages.ts).
  "$tar" -o "$d/images/k3s-airgap-images-amd64.tar" -merge "$d/images/pause.tar" \
    -merge "$d/images/local-path-provisioner.tar" -merge "$d/images/busybox.tar"
  cp "$tar" "$d/ocitar"
  printf '%s\n' "$fp" >"$d/.stamp"
  rm -rf "$NODE_DIR"
  mv "$d" "$NODE_DIR"
  log "node: done in $(( $(date +%s) - t0 ))s"
}

NETPOL_DIR="$BIN_ROOT/netpol-$NETPOL_KUBE_ROUTER_VERSION-$NETPOL_COREDNS_VERSION-$NETPOL_IMAGES_VERSION"
# NetworkPolicy on the real node (issue 11 item 4): k3s-netpol (kube-router's controller as K3s's agent runs it) and
# the CoreDNS + netprobe images, from two wrapper modules under harness/toolchain/netpol; images packed by ocitar
# (harness/images). ipset and iptables come from Debian (harness/setup.sh).
group_netpol() {
  local kv="github.com/cloudnativelabs/kube-router/v2/pkg/version" fp images_fp t0 work d
  local kld="-s -w -X $kv.Version=$NETPOL_KUBE_ROUTER_VERSION -X $kv.BuildDate=unknown"
  local cld="-s -w -X github.com/coredns/coredns/coremain.GitCommit=$NETPOL_COREDNS_VERSION"
  images_fp=$(cd "$HARNESS_DIR/images" && find . -type f \( -name go.mod -o -name '*.go' \) ! -name '*_test.go' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  fp=$(fingerprint netpol "$kld" "$cld" "$images_fp" "$NETPOL_COREDNS_IMAGE" "$NETPOL_PROBE_IMAGE")
  if up_to_date "$NETPOL_DIR" "$fp" k3s-netpol coredns netprobe images/coredns.tar images/netprobe.tar; then
    log "netpol: up to date ($NETPOL_DIR)"; return 0
  fi
  if [ "$CHECK" = 1 ]; then log "netpol: NOT built or out of date ($NETPOL_DIR)"; MISSING+=(netpol); return 0; fi
  t0=$(date +%s)
  log "netpol: building into $NETPOL_DIR"
  work="$WORK_ROOT/netpol" # (two modules, no go.mod at the top: prepare_work does not apply)
  rm -rf "$work"; mkdir -p "$work"
  cp -R "$WRAPPERS/netpol/." "$work/"
  cp -R "$HARNESS_DIR/images" "$work/images"
  d="$NETPOL_DIR.tmp"
  rm -rf "$d"; mkdir -p "$d/images"
  go_build "$work/kube-router" "$d/k3s-netpol" . "$kld"
  go_build "$work/dns" "$d/coredns" ./coredns "$cld"
  go_build "$work/dns" "$d/netprobe" ./netprobe "-s -w"
  go_build "$work/images" "$work/bin/ocitar" ./ocitar "-s -w"
  "$work/bin/ocitar" -bin "$d/coredns" -o "$d/images/coredns.tar" -name "$NETPOL_COREDNS_IMAGE"
  "$work/bin/ocitar" -bin "$d/netprobe" -o "$d/images/netprobe.tar" -name "$NETPOL_PROBE_IMAGE"
  printf '%s\n' "$fp" >"$d/.stamp"
  rm -rf "$NETPOL_DIR"
  mv "$d" "$NETPOL_DIR"
  log "netpol: done in $(( $(date +%s) - t0 ))s"
}

# ---------------------------------------------------------------------------------------------
# toolchain.json

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

write_toolchain_json() {
  local tmp="$TOOLCHAIN_JSON.tmp"
  {
    printf '{\n'
    printf '  "cache": %s,\n' "$(json_str "$CACHE")"
    printf '  "pulumiRoot": %s,\n' "$(json_str "$PULUMI_ROOT")"
    printf '  "pulumiHome": %s,\n' "$(json_str "$PULUMI_HOME_DIR")"
    printf '  "kwokStages": %s,\n' "$(json_str "$KWOK_DIR/kwok-stages.yaml")"
    printf '  "kwokStagesNoLease": %s,\n' "$(json_str "$KWOK_DIR/kwok-stages-no-lease.yaml")"
    printf '  "bin": {\n'
    printf '    "pulumi": %s,\n' "$(json_str "$PULUMI_BIN")"
    printf '    "pulumi-language-nodejs": %s,\n' "$(json_str "$PULUMI_ROOT/bin/pulumi-language-nodejs")"
    printf '    "pulumi-resource-command": %s,\n' "$(json_str "$COMMAND_PROVIDER_DIR/pulumi-resource-command")"
    printf '    "pulumi-resource-kubernetes": %s,\n' "$(json_str "$K8S_PROVIDER_DIR/pulumi-resource-kubernetes")"
    printf '    "pulumi-resource-random": %s,\n' "$(json_str "$RANDOM_PROVIDER_DIR/pulumi-resource-random")"
    printf '    "etcd": %s,\n' "$(json_str "$ETCD_DIR/etcd")"
    printf '    "kube-apiserver": %s,\n' "$(json_str "$KUBE_DIR/kube-apiserver")"
    printf '    "kube-controller-manager": %s,\n' "$(json_str "$KUBE_DIR/kube-controller-manager")"
    printf '    "kube-scheduler": %s,\n' "$(json_str "$KUBE_DIR/kube-scheduler")"
    printf '    "kubectl": %s,\n' "$(json_str "$KUBE_DIR/kubectl")"
    printf '    "kwok": %s,\n' "$(json_str "$KWOK_DIR/kwok")"
    printf '    "forge-edge-checker": %s\n' "$(json_str "$CHECKER_DIR/forge-edge-checker")"
    printf '  },\n'
    printf '  "plugins": {\n'
    printf '    "command": %s,\n' "$(json_str "$COMMAND_PROVIDER_VERSION")"
    printf '    "kubernetes": %s,\n' "$(json_str "$K8S_PROVIDER_VERSION")"
    printf '    "random": %s\n' "$(json_str "$RANDOM_PROVIDER_VERSION")"
    printf '  },\n'
    printf '  "versions": {\n'
    printf '    "go": %s,\n' "$(json_str "$GO_VERSION")"
    printf '    "pulumi": %s,\n' "$(json_str "$PULUMI_VERSION")"
    printf '    "pulumiLanguageNodejs": %s,\n' "$(json_str "$PULUMI_LANGUAGE_NODEJS_VERSION")"
    printf '    "pulumiResourceCommand": %s,\n' "$(json_str "$COMMAND_PROVIDER_VERSION")"
    printf '    "pulumiResourceKubernetes": %s,\n' "$(json_str "$K8S_PROVIDER_VERSION")"
    printf '    "pulumiResourceRandom": %s,\n' "$(json_str "$RANDOM_PROVIDER_VERSION")"
    printf '    "etcd": %s,\n' "$(json_str "$ETCD_VERSION")"
    printf '    "kubernetes": %s,\n' "$(json_str "$KUBE_VERSION")"
    printf '    "kwok": %s,\n' "$(json_str "$KWOK_VERSION")"
    printf '    "checker": %s,\n' "$(json_str "$CHECKER_VERSION")"
    printf '    "checkerContainerd": %s,\n' "$(json_str "$CHECKER_CONTAINERD_VERSION")"
    printf '    "checkerDevicePlugin": %s,\n' "$(json_str "$CHECKER_DEVICE_PLUGIN_VERSION")"
    printf '    "npm:@pulumi/pulumi": %s,\n' "$(json_str "$PULUMI_NPM")"
    printf '    "npm:@pulumi/command": %s,\n' "$(json_str "$COMMAND_PROVIDER_NPM")"
    printf '    "npm:@pulumi/kubernetes": %s,\n' "$(json_str "$K8S_PROVIDER_NPM")"
    printf '    "npm:@pulumi/random": %s\n' "$(json_str "$RANDOM_PROVIDER_NPM")"
    printf '  },\n'
    printf '  "notes": {\n'
    printf '    "pulumi-language-nodejs": %s,\n' "$(json_str "$PULUMI_LANGUAGE_NODEJS_NOTE")"
    printf '    "pulumi-resource-command": %s,\n' "$(json_str "$COMMAND_PROVIDER_NOTE")"
    printf '    "pulumi-resource-random": %s\n' "$(json_str "$RANDOM_PROVIDER_NOTE")"
    printf '  }\n'
    printf '}\n'
  } >"$tmp"
  if [ -f "$TOOLCHAIN_JSON" ] && cmp -s "$tmp" "$TOOLCHAIN_JSON"; then
    rm -f "$tmp"
    log "toolchain.json: up to date ($TOOLCHAIN_JSON)"
  else
    mv "$tmp" "$TOOLCHAIN_JSON"
    log "toolchain.json: written ($TOOLCHAIN_JSON)"
  fi
}

# ---------------------------------------------------------------------------------------------
# --verify: each binary reports its version

verify_group() {
  local penv=(env PULUMI_HOME="$PULUMI_HOME_DIR" PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true)
  case "$1" in
    etcd) "$ETCD_DIR/etcd" --version ;;
    kwok) "$KWOK_DIR/kwok" --version ;;
    kube)
      "$KUBE_DIR/kube-apiserver" --version
      "$KUBE_DIR/kube-controller-manager" --version
      "$KUBE_DIR/kube-scheduler" --version
      "$KUBE_DIR/kubectl" version --client ;;
    pulumi) "${penv[@]}" "$PULUMI_BIN" version ;;
    language-nodejs) ls -l "$PULUMI_ROOT/bin/pulumi-language-nodejs" ;;
    command|kubernetes|random) "${penv[@]}" "$PULUMI_BIN" plugin ls | grep -E "^(NAME|$1 )" ;;
    checker) "$CHECKER_DIR/forge-edge-checker" version ;;
    node)
      "$NODE_DIR/kubelet" --version; "$NODE_DIR/kube-proxy" --version; "$NODE_DIR/containerd" --version
      "$NODE_DIR/runc" --version; "$NODE_DIR/cni/bridge" 2>&1 | head -n1 || true ;;
    netpol) "$NETPOL_DIR/coredns" -version; ls -l "$NETPOL_DIR/k3s-netpol" "$NETPOL_DIR/images" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# main

mkdir -p "$CACHE"
if [ "$CHECK" = 0 ]; then
  exec 9>"$CACHE/.lock"
  if ! flock -n 9; then
    log "another build-toolchain.sh holds $CACHE/.lock; waiting"
    flock 9
  fi
  mkdir -p "$BIN_ROOT" "$WORK_ROOT"
fi

log "cache: $CACHE; groups: ${SELECTED[*]}; $GO_VERSION; GOMODCACHE=$GO_MODCACHE"
for g in "${SELECTED[@]}"; do
  "group_${g//-/_}"
done

if [ "$CHECK" = 1 ]; then
  [ -f "$TOOLCHAIN_JSON" ] || MISSING+=("toolchain.json")
  if [ "${#MISSING[@]}" -gt 0 ]; then
    log "check: missing or out of date: ${MISSING[*]}"
    exit 1
  fi
  log "check: everything selected is built"
  if [ "$VERIFY" = 1 ]; then
    for g in "${SELECTED[@]}"; do
      log "verify $g:"
      verify_group "$g"
    done
  fi
  exit 0
fi

write_toolchain_json
if [ "$VERIFY" = 1 ]; then
  for g in "${SELECTED[@]}"; do
    log "verify $g:"
    verify_group "$g"
  done
fi
log "all done in $(( $(date +%s) - START_TS ))s"
