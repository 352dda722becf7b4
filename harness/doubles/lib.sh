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

# ---- K3s's import of image tarballs (k3s-io/k3s pkg/agent/containerd: containerd.go preloadFile, watcher.go) ----
K3S_IMAGES_DIR=/var/lib/rancher/k3s/agent/images
# watcher.go isFileSupported: rancher/wharfie tarfile.SupportedExtensions plus ".txt", a case-sensitive suffix match.
K3S_IMAGE_EXTS=(.tar .tar.lz4 .tar.bz2 .tbz .tar.gz .tgz .tar.zst .tzst .txt)
# containerd.go: K3s's own pin label next to the CRI's, so that it can clear its pins at the next start.
K3S_PIN_LABELS=(io.cattle.k3s.pinned=pinned io.cri-containerd.pinned=pinned)

k3s_image_supported() {
  local e
  for e in "${K3S_IMAGE_EXTS[@]}"; do [[ $1 == *"$e" ]] && return 0; done
  return 1
}

# k3s_image_stream FILE: the tar stream of an image tarball, decompressed by its name as wharfie's GetOpener
# (HasSuffixI) does.
k3s_image_stream() {
  case ${1,,} in
  *.tar) cat -- "$1" ;;
  *.tar.lz4) lz4 -dc -- "$1" ;;
  *.tar.bz2 | *.tbz) bzip2 -dc -- "$1" ;;
  *.tar.gz | *.tgz) gzip -dc -- "$1" ;;
  *tar.zst | *.tzst) zstd -dc -- "$1" ;;
  *)
    echo "unhandled file type; supported extensions: ${K3S_IMAGE_EXTS[*]:0:8}"
    return 1
    ;;
  esac
}

# k3s_image_tar FILE TAR-ARGS...: tar on the image tarball FILE (decompressed as above); a plain .tar is read in place,
# so tar can seek past the layers (a GB-sized tarball is listed without reading it all).
k3s_image_tar() {
  local f=$1
  shift
  if [[ ${f,,} == *.tar ]]; then tar "$@" -f "$f"; else k3s_image_stream "$f" | tar "$@"; fi
}

# docker_ref REF: REF as containerd names an image (distribution/reference ParseDockerRef: no domain -> docker.io,
# one path component -> library/, no tag or digest -> :latest; a digest drops the tag). Fails on an invalid name.
docker_ref() {
  local ref=$1 name digest="" tag="" domain rest last
  if [[ $ref == *@* ]]; then
    digest=${ref#*@}
    ref=${ref%%@*}
  fi
  name=$ref
  last=${name##*/}
  if [[ $last == *:* ]]; then
    tag=${last##*:}
    name=${name%:*}
  fi
  domain=docker.io rest=$name
  if [[ $name == */* ]]; then
    local first=${name%%/*}
    if [[ $first == *[.:]* || $first == localhost || $first != "${first,,}" ]]; then
      domain=$first
      rest=${name#*/}
    fi
  fi
  [[ $domain == index.docker.io ]] && domain=docker.io
  [[ $domain == docker.io && $rest != */* ]] && rest=library/$rest
  [[ $rest =~ ^[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*$ ]] || return 1
  [[ -z $tag || $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || return 1
  if [[ -n $digest ]]; then
    printf '%s/%s@%s\n' "$domain" "$rest" "$digest"
  else
    printf '%s/%s:%s\n' "$domain" "$rest" "${tag:-latest}"
  fi
}

# k3s_image_refs FILE: "name<TAB>digest" of every image containerd's Import of FILE creates, then K3s's retag of each
# tagged name as name@digest (containerd.go retagImages); a pre-pull list's names. On a file that is not an image
# archive it prints containerd's error and fails. Names: index.json's io.containerd.image.name, else
# org.opencontainers.image.ref.name, as is (client/import.go imageName); a docker archive's RepoTags normalised
# (core/images/archive normalizeReference). A docker archive's manifest digest is containerd's conversion: "-".
k3s_image_refs() {
  local f=$1 members n
  if [[ $f == *.txt ]]; then
    while IFS= read -r n || [[ -n $n ]]; do
      n=${n//[[:space:]]/}
      [[ -n $n ]] || continue
      n=$(docker_ref "$n") && printf '%s\t-\n' "$n"
    done <"$f"
    return 0
  fi
  # A partial file is a truncated tar stream: containerd's tar reader fails as tar -t does.
  members=$(k3s_image_tar "$f" -t 2>/dev/null) || {
    echo "unexpected EOF"
    return 1
  }
  if grep -qx 'index.json' <<<"$members"; then
    local name digest norm
    while IFS=$'\t' read -r name digest; do
      [[ -n $name ]] || continue
      printf '%s\t%s\n' "$name" "$digest"
      # retagImages: name.Name()@digest for every name that parses as a tagged reference.
      if norm=$(docker_ref "$name") && [[ $norm != *@* && ${name##*/} == *:* ]]; then
        printf '%s@%s\t%s\n' "${norm%:*}" "$digest" "$digest"
      fi
    done < <(k3s_image_tar "$f" -xO --occurrence=1 index.json | jq -r '.manifests[]? |
      [(.annotations["io.containerd.image.name"] // .annotations["org.opencontainers.image.ref.name"] // ""), .digest] | @tsv')
  elif grep -qx 'manifest.json' <<<"$members"; then
    while IFS= read -r n; do
      n=$(docker_ref "$n") && printf '%s\t-\n' "$n"
    done < <(k3s_image_tar "$f" -xO --occurrence=1 manifest.json | jq -r '.[].RepoTags[]?')
  else
    echo "unrecognized image format"
    return 1
  fi
}

# k3s_log LEVEL MSG: one line as K3s's logrus writes it to its journal.
k3s_log() {
  printf 'time="%s" level=%s msg="%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2"
}
