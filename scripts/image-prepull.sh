#!/usr/bin/env bash
# Starts the pull of the stack's images as soon as K3s runs, before any Deployment asks for them: writes K3s's
# pre-pull list (a .txt of image names in agent/images). K3s's image watcher pulls the names through the CRI, with
# registries.yaml's mirrors, in the background, and pins what it pulled (k3s-io/k3s pkg/agent/containerd/watcher.go
# and containerd.go prePullImages). Runs after the K3s step on purpose: a list present when K3s starts is pulled
# before its kubelet starts (pkg/agent/run.go), which would hold the node back for the whole pull.
# Idempotent: the list is rewritten only when it differs. Nothing here waits. Undone by image-prepull-remove.sh.
#
# forge:param IMAGES       image references to pull, one per line
# forge:param K3S_VERSION  the running K3s release: lists added while K3s runs are read from v1.29.13, v1.30.9,
#                          v1.31.5 and v1.32.1 on (k3s-io/k3s#11561-#11563; v1.32.0 has no watcher)
set -euo pipefail

: "${IMAGES:?}" "${K3S_VERSION:?}"

IMAGES_DIR=/var/lib/rancher/k3s/agent/images
LIST="$IMAGES_DIR/forge-edge-prepull.txt"

log() { printf 'forge-edge[image-prepull]: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# watches_running K3S_VERSION: K3s imports files added to agent/images while it runs (January 2025 releases on).
watches_running() {
  local minor patch
  [[ $1 =~ ^v1\.([0-9]+)\.([0-9]+)[+-] ]] || die "K3S_VERSION '$1' is not a K3s release such as v1.36.4+k3s1"
  minor=${BASH_REMATCH[1]} patch=${BASH_REMATCH[2]}
  ((minor >= 33 || (minor == 32 && patch >= 1) || (minor == 31 && patch >= 5) || (minor == 30 && patch >= 9) ||
    (minor == 29 && patch >= 13)))
}

count=0
new="$(mktemp)"
trap 'rm -f "$new"' EXIT
while IFS= read -r ref; do
  [ -n "$ref" ] || continue
  [[ $ref =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "'$ref' is not an image reference"
  printf '%s\n' "$ref" >>"$new"
  count=$((count + 1))
done <<<"$IMAGES"
[ "$count" -gt 0 ] || die "no image to pull"

if ! watches_running "$K3S_VERSION"; then
  # An older K3s reads the list only at its next start, and then before its kubelet: worse than no list.
  log "K3s $K3S_VERSION does not pull lists added while it runs: the kubelet pulls on demand"
  rm -f "$LIST"
  printf 'prepull=skipped images=%s\n' "$count"
  exit 0
fi
[ -d "$IMAGES_DIR" ] || (umask 022 && mkdir -p "$IMAGES_DIR")
if ! cmp -s "$new" "$LIST"; then
  install -m 0644 "$new" "$LIST"
  log "asked K3s to pull $count image(s) in the background"
fi
printf 'prepull=%s images=%s\n' "$LIST" "$count"
