#!/usr/bin/env bash
# netns-run.sh CMD [ARG...]: runs CMD in a private network namespace that has only loopback.
# The simulated sites listen on loopback ports and k3s-ansible sets sysctls such as net.ipv4.ip_forward: inside a
# namespace of its own, a test run neither changes the machine's network nor crosses another run's sites.
set -euo pipefail
if [ "${FORGE_EDGE_NETNS:-}" = 1 ]; then
  exec "$@"
fi
# shellcheck disable=SC2016 # $@ is expanded by the inner bash, on purpose
exec unshare --net -- env FORGE_EDGE_NETNS=1 bash -c 'ip link set lo up && exec "$@"' netns-run "$@"
