#!/usr/bin/env bash
# Test double of the K3s installer (get.k3s.io install.sh), with the binary pre-placed (air gap, or k3s-fetch). Run by the node
# script as `INSTALL_K3S_SKIP_DOWNLOAD=true|binary INSTALL_K3S_EXEC=server|agent [K3S_URL=...] sh install.sh`.
# Like the real one it expects /usr/local/bin/k3s, writes the service (here: systemctl-double state),
# the uninstall and killall scripts and the kubectl symlink, then enables and (re)starts the service.
# Being run by `sh` (dash), it re-executes itself with bash first:
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=/dev/null
. "${FORGE_HARNESS_DIR:-/opt/forge-harness}/doubles/lib.sh"
log_call install.sh "$@" "INSTALL_K3S_EXEC=${INSTALL_K3S_EXEC:-}" "INSTALL_K3S_VERSION=${INSTALL_K3S_VERSION:-}" \
  "INSTALL_K3S_SKIP_DOWNLOAD=${INSTALL_K3S_SKIP_DOWNLOAD:-}" "K3S_URL=${K3S_URL:-}"

maybe_fault install.sh

info() { echo "[INFO]  $*"; }
fatal() {
  echo "[ERROR]  $*" >&2
  exit 1
}

BIN_DIR=/usr/local/bin
# get.k3s.io's can_skip_download_binary: `true` skips every download, `binary` the binary only.
[[ ${INSTALL_K3S_SKIP_DOWNLOAD:-} == true || ${INSTALL_K3S_SKIP_DOWNLOAD:-} == binary ]] ||
  fatal "forge-edge double: a test host cannot download K3s (set INSTALL_K3S_SKIP_DOWNLOAD=true or binary)"
[[ -x $BIN_DIR/k3s ]] || fatal "Executable k3s binary not found at $BIN_DIR/k3s"
require_control_plane

# Command: first word of INSTALL_K3S_EXEC / args if server|agent, else agent when K3S_URL is set.
read -r -a exec_words <<<"${INSTALL_K3S_EXEC:-} $*"
cmd=""
if ((${#exec_words[@]} > 0)) && [[ ${exec_words[0]} == server || ${exec_words[0]} == agent ]]; then
  cmd=${exec_words[0]}
  exec_words=("${exec_words[@]:1}")
elif [[ -n ${K3S_URL:-} ]]; then
  [[ -n ${K3S_TOKEN:-} || -n ${K3S_TOKEN_FILE:-} ]] ||
    fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
  cmd=agent
else
  cmd=server
fi
if [[ $cmd == server ]]; then svc=k3s; else svc=k3s-agent; fi
info "Skipping k3s download and verify"
info "Using ${INSTALL_K3S_VERSION:-$(k3s_version)} as release (forge-edge double)"
if [[ -n ${INSTALL_K3S_VERSION:-} ]]; then
  mkdir -p "$(dirname "$K3S_INSTALLED_VERSION_FILE")"
  printf '%s\n' "$INSTALL_K3S_VERSION" >"$K3S_INSTALLED_VERSION_FILE"
fi

mkdir -p "$SYSTEMD_STATE"
# Service definition (real: /etc/systemd/system/$svc.service + $svc.service.env).
{
  echo "ROLE=$cmd"
  echo "EXEC=$BIN_DIR/k3s $cmd ${exec_words[*]}"
} >"$SYSTEMD_STATE/$svc.unit"
: >"$SYSTEMD_STATE/$svc.env"
for v in K3S_URL K3S_TOKEN K3S_TOKEN_FILE; do
  if [[ -n ${!v:-} ]]; then printf '%s=%q\n' "$v" "${!v}" >>"$SYSTEMD_STATE/$svc.env"; fi
done
chmod 0600 "$SYSTEMD_STATE/$svc.env"
# As get.k3s.io's create_env_file: the unit's EnvironmentFile with the installer's K3S_*/CONTAINERD_* variables
# (k3s-ansible appends the agent's K3S_TOKEN to it; the systemctl double reads it at start).
systemd_dir=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
mkdir -p "$systemd_dir"
(
  umask 077
  env | { grep -E '^(K3S|CONTAINERD)_' || true; } >"$systemd_dir/$svc.service.env"
)
if ((${#exec_words[@]} > 0)); then
  printf 'K3S_DOUBLE_ARGS=%q\n' "${exec_words[*]}" >>"$SYSTEMD_STATE/$svc.env"
fi

if [[ ! -e $BIN_DIR/kubectl ]]; then
  info "Creating $BIN_DIR/kubectl symlink to k3s"
  ln -s k3s "$BIN_DIR/kubectl"
fi
install -m 0755 "$FH/doubles/k3s-killall.sh" "$BIN_DIR/k3s-killall.sh"
if [[ $cmd == server ]]; then uninstall=k3s-uninstall.sh; else uninstall=k3s-agent-uninstall.sh; fi
install -m 0755 "$FH/doubles/k3s-uninstall.sh" "$BIN_DIR/$uninstall"
info "Creating uninstall script $BIN_DIR/$uninstall"

systemctl daemon-reload
if [[ ${INSTALL_K3S_SKIP_ENABLE:-} != true ]]; then
  info "systemd: Enabling $svc unit"
  systemctl enable "$svc" >/dev/null
fi
if [[ ${INSTALL_K3S_SKIP_START:-} != true && ${INSTALL_K3S_SKIP_ENABLE:-} != true ]]; then
  info "systemd: Starting $svc"
  systemctl restart "$svc"
fi
