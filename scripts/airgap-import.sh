#!/usr/bin/env bash
# Air gap: hands the stack's image tarballs to K3s once it runs, and waits until containerd has every image the stack
# runs. K3s's image watcher imports a tarball that appears in agent/images while K3s runs (k3s-io/k3s
# pkg/agent/containerd/watcher.go: fsnotify on the directory, each event handled 2 s later, a file imported when it
# is new to the watcher or its size changed), so the multi-GB tarballs no longer hold back K3s's start and kubelet.
# Each tarball is placed atomically: a hard link (a copy across filesystems) under a temporary name that the watcher
# ignores (its suffix is not a tarball's), then renamed, so K3s never reads a partial file. What was placed is
# recorded for airgap-import-remove.sh. Idempotent: a tarball placed from the same staged file is left alone. Every
# wait is bounded.
#
# forge:param TARBALLS         space-separated tarballs staged in /var/lib/forge-edge/airgap/images
# forge:param IMAGES           the image references the stack runs, normalised as containerd lists them, one per line
# forge:param TIMEOUT_SECONDS  how long K3s may take to import them (the program scales it with the tarballs' bytes)
set -euo pipefail

: "${TARBALLS:?}" "${IMAGES:?}" "${TIMEOUT_SECONDS:?}"

STATE_DIR=/var/lib/forge-edge
STAGED="$STATE_DIR/airgap/images"
RECORD="$STATE_DIR/airgap-import"
IMAGES_DIR=/var/lib/rancher/k3s/agent/images
PATH="$PATH:/usr/local/bin"

log() { printf 'forge-edge[airgap-import]: %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

[[ $TIMEOUT_SECONDS =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT_SECONDS '$TIMEOUT_SECONDS' is not a number of seconds"
command -v k3s >/dev/null 2>&1 || die "k3s is not installed: the K3s step runs before this one"

# identity FILE: what says the staged file is unchanged since it was placed (size and mtime, as K3s's watcher uses).
identity() { stat -c '%s %Y' "$1"; }
recorded() { awk -v n="$1" '$1 == n { print $2, $3 }' "$RECORD" 2>/dev/null; }
record() {
  local others
  others="$(awk -v n="$1" '$1 != n' "$RECORD" 2>/dev/null || true)"
  { [ -z "$others" ] || printf '%s\n' "$others"; printf '%s %s\n' "$1" "$2"; } >"$RECORD.new"
  mv -f "$RECORD.new" "$RECORD"
}

umask 022
mkdir -p "$STATE_DIR" "$IMAGES_DIR"
placed=0
for t in $TARBALLS; do
  case "$t" in */* | .*) die "bad tarball name '$t'" ;; esac
  src="$STAGED/$t" dst="$IMAGES_DIR/$t"
  [ -s "$src" ] || die "staged tarball $src is missing (the copy steps stage it before this step)"
  id="$(identity "$src")"
  if [ -e "$dst" ] && [ "$(recorded "$t")" = "$id" ]; then continue; fi
  if [ -e "$dst" ] && [ -z "$(recorded "$t")" ] && [ "$(stat -c %s "$dst")" = "${id%% *}" ]; then
    # Placed before this step existed (K3s's step copied every tarball before K3s started): adopt it.
    record "$t" "$id"
    continue
  fi
  if [ -e "$dst" ]; then
    # The staged tarball changed (a hard link shares its inode, so the file K3s has may have changed with it):
    # remove it and let the watcher forget it (events are handled 2 s late) before the new one appears.
    rm -f "$dst"
    sleep 3
  fi
  tmp="$IMAGES_DIR/.forge-edge-$t.part"
  rm -f "$tmp"
  ln "$src" "$tmp" 2>/dev/null || cp "$src" "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$dst"
  record "$t" "$id"
  placed=$((placed + 1))
  log "placed $t in $IMAGES_DIR"
done

# Poll containerd (namespace k8s.io, where K3s imports) once a second until it lists every image.
mapfile -t want < <(printf '%s\n' "$IMAGES" | sed '/^$/d')
missing=("${want[@]}")
last_error=""
started="$(date +%s)"
deadline=$((started + TIMEOUT_SECONDS))
# Counted (one listing a second at most) and bounded by the clock too: a slow listing must not stretch the wait.
for _ in $(seq 1 "$TIMEOUT_SECONDS"); do
  if listed="$(timeout 10 k3s ctr -n k8s.io images ls -q 2>&1)"; then
    last_error=""
    missing=()
    for ref in "${want[@]}"; do grep -qxF "$ref" <<<"$listed" || missing+=("$ref"); done
    [ "${#missing[@]}" -eq 0 ] && break
  else
    last_error="$listed"
  fi
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 1
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ -z "$last_error" ] || log "k3s ctr images ls failed: $last_error"
  die "after $(($(date +%s) - started))s containerd still lacks ${missing[*]}: check that the stack's tarballs hold them, and K3s's log ('journalctl -u k3s' or 'k3s-agent') for \"Imported images from $IMAGES_DIR/…\" and \"Failed to import\""
fi
printf 'placed=%s images=%s waited=%ss\n' "$placed" "${#want[@]}" "$(($(date +%s) - started))"
