#!/usr/bin/env bash
# Checks prebuilt addons (default: prebuilds/linux-*/*.node) and prints what each needs of the system:
# - the ELF architecture matches its folder, and the binary is stripped;
# - the newest glibc / libstdc++ symbol versions it imports (objdump -T), against the ceilings that
#   README's Install section promises (raise those only together with the README);
# - everything it imports from the Node process is Node-API (napi_*, node_api_*) or libuv (uv_*, a
#   stable C ABI, major 1 in every supported Node), so one binary loads on every Node version.
set -euo pipefail
cd "$(dirname "$0")/.."

GLIBC_MAX=2.33     # lstat64/fstat64 became real glibc exports in 2.33; fcntl64 in 2.28
GLIBCXX_MAX=3.4.29 # libstdc++ of GCC 11 (std::__throw_bad_array_new_length)
CXXABI_MAX=1.3.9

[ "$#" -gt 0 ] || set -- prebuilds/linux-*/*.node
failed=0
fail() { echo "  FAIL: $*" >&2; failed=1; }
newest() { grep -o "($1_[0-9.]*)" | tr -d '()' | sed "s/^$1_//" | sort -V | tail -n1; }
above() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n1)" != "$2" ]; } # above VERSION LIMIT

for file in "$@"; do
  [ -f "$file" ] || { echo "check-prebuilds: no such file: $file" >&2; exit 1; }
  case "$file" in
    *linux-x64/*) objdump=objdump; want='i386:x86-64' ;;
    *linux-arm64/*) objdump=aarch64-linux-gnu-objdump; want='aarch64' ;;
    *) echo "check-prebuilds: $file is not under prebuilds/linux-x64 or prebuilds/linux-arm64" >&2; exit 1 ;;
  esac
  arch="$("$objdump" -f "$file" | sed -n 's/^architecture: \([^,]*\),.*/\1/p')"
  syms="$("$objdump" -T "$file")"
  glibc="$(newest GLIBC <<<"$syms")"
  glibcxx="$(newest GLIBCXX <<<"$syms")"
  cxxabi="$(newest CXXABI <<<"$syms")"
  # Undefined, unversioned: resolved against the node executable (weak toolchain hooks aside).
  from_node="$(awk '/\*UND\*/ && $NF !~ /^(_ITM_|__gmon_start__)/ && !/\(/ { print $NF }' <<<"$syms" | sort)"
  napi_count="$(grep -cE '^(napi_|node_api_)' <<<"$from_node" || true)"
  uv="$(grep -E '^uv_' <<<"$from_node" | tr '\n' ' ' | sed 's/ $//')"
  other="$(grep -vE '^(napi_|node_api_|uv_)' <<<"$from_node" | tr '\n' ' ' || true)"

  echo "$file: $arch, $(stat -c %s "$file") bytes"
  echo "  needs: GLIBC_$glibc (max), GLIBCXX_$glibcxx (max), CXXABI_$cxxabi (max);" \
       "from Node: $napi_count Node-API functions, libuv: ${uv:-none}"
  [ "$arch" = "$want" ] || fail "architecture $arch, expected $want"
  if readelf -S "$file" | grep -q '\.symtab'; then fail "not stripped"; fi
  grep -q ' node_api_module_get_api_version_v1$' <<<"$syms" \
    || fail "no node_api_module_get_api_version_v1 export: the Node-API version is not declared"
  [ -z "$other" ] || fail "imports from Node beyond Node-API/libuv (ties it to one Node ABI): $other"
  above "$glibc" "$GLIBC_MAX" && fail "GLIBC_$glibc > GLIBC_$GLIBC_MAX"
  above "$glibcxx" "$GLIBCXX_MAX" && fail "GLIBCXX_$glibcxx > GLIBCXX_$GLIBCXX_MAX"
  above "$cxxabi" "$CXXABI_MAX" && fail "CXXABI_$cxxabi > CXXABI_$CXXABI_MAX"
done
if [ "$failed" -ne 0 ]; then
  echo "check-prebuilds: FAILED (ceilings: GLIBC_$GLIBC_MAX, GLIBCXX_$GLIBCXX_MAX, CXXABI_$CXXABI_MAX)" >&2
  exit 1
fi
echo "check-prebuilds: ok (ceilings: GLIBC_$GLIBC_MAX, GLIBCXX_$GLIBCXX_MAX, CXXABI_$CXXABI_MAX)"
