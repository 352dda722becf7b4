#!/usr/bin/env bash
# Makes the air-gap staging directory that CopyToRemote writes into. CopyToRemote speaks SFTP as the SSH user, so
# for a non-root user the directory must be that user's; k3s-install.sh then installs from it as root. Created
# before the copies, removed (with everything staged in it) on delete by airgap-unstage.sh. Idempotent.
#
# forge:param OWNER  the SSH user the copies run as
set -euo pipefail

: "${OWNER:?}"

STATE_DIR=/var/lib/forge-edge
STAGE="$STATE_DIR/airgap"

id -u "$OWNER" >/dev/null 2>&1 || {
  printf 'forge-edge[airgap-stage]: ERROR: user %s does not exist on this node\n' "$OWNER" >&2
  exit 1
}
install -d -m 0755 -o root -g root "$STATE_DIR"
install -d -m 0700 -o "$OWNER" "$STAGE" "$STAGE/images"
printf 'stage=%s owner=%s\n' "$STAGE" "$OWNER"
