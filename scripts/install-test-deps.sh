#!/usr/bin/env bash
# Debian packages the build and the test suite need (.ci/run calls this; the one list of them):
#   python3, make, g++  node-gyp's build of the addon (python3 also speaks SCM_RIGHTS in the interop tests)
#   python3-systemd     libsystemd's own sd_listen_fds/sd_notify clients, peers of test/systemd-interop
#   systemd             /lib/systemd/systemd booted as PID 1 in a namespace; systemd-notify and
#                       systemd-socket-activate, libsystemd's own clients in fdpass run's tests
#   util-linux          unshare, nsenter
#   curl                the README's first commands (test/docs.test.ts runs them as written)
# Idempotent: installs only what is missing, and only as root.
set -euo pipefail

need=()
for tool in python3 make g++; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
/usr/bin/python3 -c 'import systemd.daemon' >/dev/null 2>&1 || need+=(python3-systemd)
[ -x /lib/systemd/systemd ] && command -v systemd-notify >/dev/null 2>&1 && command -v systemd-socket-activate >/dev/null 2>&1 ||
  need+=(systemd)
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
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
