#!/usr/bin/env bash
# Debian packages the test suite needs beyond the build (python3, make, g++ are .ci/run's):
#   python3-systemd   libsystemd's own sd_listen_fds/sd_notify clients, peers of test/systemd-interop
#   systemd           /lib/systemd/systemd booted as PID 1 in a namespace, systemd-socket-activate
#   util-linux        unshare, nsenter
#   curl              the README's first commands (test/docs.test.ts runs them as written)
# Idempotent: installs only what is missing, and only as root (CI runs it from .ci/run).
set -euo pipefail

need=()
/usr/bin/python3 -c 'import systemd.daemon' >/dev/null 2>&1 || need+=(python3-systemd)
[ -x /lib/systemd/systemd ] && command -v systemd-socket-activate >/dev/null 2>&1 || need+=(systemd)
command -v unshare >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; run this script as root (apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
