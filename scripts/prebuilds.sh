#!/usr/bin/env bash
# npm run prebuilds: Node-API prebuilds of native/ for linux-x64 (native) and linux-arm64 (cross-compiled
# with Debian's g++-aarch64-linux-gnu) into prebuilds/<platform>-<arch>/, then the symbol check.
#
# Offline: node-gyp compiles against the installed Node's headers (npm_config_nodedir), never downloads.
# The build runs in a copy of the sources so the checkout's build/ (the developer's own build, which
# node-gyp-build prefers over prebuilds/) is never replaced by a stripped or arm64 binary.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

# Tools: the host toolchain, the arm64 cross toolchain (its binutils include aarch64-linux-gnu-strip)
# and binutils' objdump for the symbol check. Debian package for each missing command.
need=()
for pair in python3:python3 make:make g++:g++ objdump:binutils \
            aarch64-linux-gnu-g++:g++-aarch64-linux-gnu aarch64-linux-gnu-strip:binutils-aarch64-linux-gnu; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "prebuilds: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Node-API: binding.gyp must pin the Node-API version; the headers must provide at least that version.
napi="$(grep -o "NAPI_VERSION=[0-9]*" binding.gyp | head -n1 | cut -d= -f2)"
if [ -z "$napi" ]; then
  echo "prebuilds: binding.gyp defines no NAPI_VERSION: a prebuild would not be tied to Node-API" >&2
  exit 1
fi

# Headers: npm_config_nodedir if set (this machine's npmrc sets /usr), else the prefix of the running node.
nodedir="${npm_config_nodedir:-$(node -p 'require("path").resolve(process.execPath, "..", "..")')}"
version_h="$nodedir/include/node/node_version.h"
if [ ! -f "$version_h" ] || [ ! -f "$nodedir/include/node/node_api.h" ] || [ ! -f "$nodedir/include/node/common.gypi" ]; then
  echo "prebuilds: no Node headers under $nodedir/include/node (set npm_config_nodedir to a Node install" \
       "with include/node; nothing is downloaded)" >&2
  exit 1
fi
hdr() { sed -n "s/^#define $1 \\([0-9]*\\)\$/\\1/p" "$version_h" | head -n1; }
target="$(hdr NODE_MAJOR_VERSION).$(hdr NODE_MINOR_VERSION).$(hdr NODE_PATCH_VERSION)"
hdr_napi="$(hdr NAPI_VERSION)"
if [ "${hdr_napi:-0}" -lt "$napi" ]; then
  echo "prebuilds: headers of Node $target provide Node-API $hdr_napi < $napi (binding.gyp)" >&2
  exit 1
fi
echo "prebuilds: Node-API $napi (binding.gyp), headers of Node $target (Node-API $hdr_napi) in $nodedir"

stage="$(mktemp -d "${TMPDIR:-/tmp}/fdpass-prebuilds.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
cp -R binding.gyp package.json native "$stage/"
ln -s "$repo/node_modules" "$stage/node_modules" # node-addon-api (binding.gyp), node-gyp, prebuildify

rm -rf prebuilds/linux-x64 prebuilds/linux-arm64
export npm_config_nodedir="$nodedir" # read by node-gyp, which prebuildify runs
prebuildify=("$repo/node_modules/.bin/prebuildify" --napi --strip --tag-libc --target "$target"
             --cache "$stage/node-gyp-devdir" --out "$repo" --cwd "$stage")

# node-gyp's output goes to a log, shown in full on failure; compiler warnings are shown either way.
build() { # build ARCH [prebuildify options]
  local arch="$1" log="$stage/build-$1.log"; shift
  if ! (cd "$stage" && "${prebuildify[@]}" "$@") >"$log" 2>&1; then
    cat "$log" >&2
    echo "prebuilds: linux-$arch build failed" >&2
    exit 1
  fi
  grep -E 'warning:|error:' "$log" || true
}

echo "prebuilds: linux-x64 with $(g++ --version | head -n1)"
build x64

echo "prebuilds: linux-arm64 with $(aarch64-linux-gnu-g++ --version | head -n1)"
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar \
  build arm64 --arch arm64 --strip-bin aarch64-linux-gnu-strip

bash "$repo/scripts/check-prebuilds.sh" prebuilds/linux-x64/*.node prebuilds/linux-arm64/*.node
