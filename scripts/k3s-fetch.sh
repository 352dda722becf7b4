#!/usr/bin/env bash
# Online installs: downloads the K3s installer and the pinned K3s binary into a staging directory, the binary
# checked against the release's sha256sum-<arch>.txt the way get.k3s.io's installer checks it. A step of its own so
# that the download runs while the nvidia-runtime step installs the toolkit; k3s-install.sh then installs from
# here with INSTALL_K3S_SKIP_DOWNLOAD=binary, as the air gap does with =true. Idempotent: a staged binary whose hash matches the
# release's is not downloaded again. Every download is bounded. Undone by k3s-fetch-remove.sh.
#
# forge:param K3S_VERSION  pinned K3s release, e.g. v1.36.4+k3s1
# forge:param ARCH         amd64 or arm64: picks the release asset (k3s, k3s-arm64) and its checksum file
# forge:param RELEASE_URL  base of the release downloads, e.g. https://github.com/k3s-io/k3s/releases/download
# forge:param INSTALL_URL  the K3s installer, e.g. https://get.k3s.io
set -euo pipefail

: "${K3S_VERSION:?}" "${ARCH:?}" "${RELEASE_URL:?}" "${INSTALL_URL:?}"

STATE_DIR=/var/lib/forge-edge
FETCH_DIR="$STATE_DIR/fetch"
# Bounds (seconds) of every download (FORGE_* overrides exist for the tests only).
MAX_TIME=${FORGE_FETCH_MAX_TIME:-600}
CURL_OPTS=(-fsSL --connect-timeout 15 --max-time "$MAX_TIME" --retry 2)

log() { printf 'forge-edge[k3s-fetch]: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

case "$ARCH" in
  amd64) asset=k3s ;;
  arm64) asset=k3s-arm64 ;;
  *) die "ARCH must be amd64 or arm64, got '$ARCH'" ;;
esac
# Release URLs carry the version with '+' escaped, as GitHub serves them.
release="$RELEASE_URL/${K3S_VERSION//+/%2B}"

install -d -m 0755 "$STATE_DIR"
install -d -m 0700 "$FETCH_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

curl "${CURL_OPTS[@]}" "$release/sha256sum-$ARCH.txt" -o "$tmp/sums" || die "cannot download $release/sha256sum-$ARCH.txt"
want="$(awk -v a="$asset" '$2 == a {print $1}' "$tmp/sums")"
[[ $want =~ ^[0-9a-f]{64}$ ]] || die "sha256sum-$ARCH.txt of $K3S_VERSION lists no checksum for $asset"

have="$(sha256sum "$FETCH_DIR/k3s" 2>/dev/null | awk '{print $1}' || true)"
if [ "$have" = "$want" ]; then
  log "K3s $K3S_VERSION ($asset) already staged"
else
  log "downloading K3s $K3S_VERSION ($asset)"
  curl "${CURL_OPTS[@]}" "$release/$asset" -o "$tmp/k3s" || die "cannot download $release/$asset"
  got="$(sha256sum "$tmp/k3s" | awk '{print $1}')"
  [ "$got" = "$want" ] || die "$asset of $K3S_VERSION: sha256 $got, the release lists $want"
  install -m 0755 "$tmp/k3s" "$FETCH_DIR/k3s"
fi

curl "${CURL_OPTS[@]}" "$INSTALL_URL" -o "$tmp/install.sh" || die "cannot download the K3s installer from $INSTALL_URL"
[ -s "$tmp/install.sh" ] || die "the K3s installer from $INSTALL_URL is empty"
cmp -s "$tmp/install.sh" "$FETCH_DIR/install.sh" || install -m 0644 "$tmp/install.sh" "$FETCH_DIR/install.sh"

# What was staged, so the K3s step refuses a binary of another release.
printf '%s\n' "$K3S_VERSION" >"$tmp/version"
cmp -s "$tmp/version" "$FETCH_DIR/version" || install -m 0644 "$tmp/version" "$FETCH_DIR/version"
printf 'k3s=%s asset=%s sha256=%s\n' "$K3S_VERSION" "$asset" "$want"
