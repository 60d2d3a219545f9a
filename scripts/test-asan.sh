#!/usr/bin/env bash
# npm run test:asan: the whole mocha suite against an AddressSanitizer + UndefinedBehaviorSanitizer
# build of native/. Fails on any sanitizer report, from this process or from any child it spawns.
#
# 1. Build native/ with binding.gyp's sanitize=1 and werror=1 (-fsanitize=address,undefined
#    -fno-sanitize-recover=undefined) in build-asan/src/, a copy of binding.gyp and native/: node-gyp
#    always builds into ./build, and build/Release (what npm test, the package and node-gyp-build use)
#    must stay the normal build. The sanitizer build is never shipped (package.json "files").
# 2. Compile lib/ and test/ (npm test's pretest).
# 3. Run mocha with the ASan runtime preloaded into Node (Node itself is not instrumented; our addon is
#    and needs the runtime first in the link order) and FDPASS_ADDON pointing lib/native.ts at the
#    sanitizer build. Children (fixtures run with process.execPath, python3, sh) inherit both through
#    the environment, so they run under ASan too.
# 4. Every process writes its reports to build-asan/logs/<tool>.<pid> (log_path), and
#    scripts/asan-reports.js decides: any ASan error, any UBSan error, anything unrecognised, and any
#    leak allocated by our addon fails the run, from mocha or from any child (a child killed at the
#    end of a test, a child whose exit code the test ignores). So does a mocha failure.
#
# Leaks: the mocha process, where most of the suite drives the addon (Workers that start and end
# included), keeps leak detection on (detect_leaks=1); Node 20 exits with no leak report of its own
# (node -e 0; this suite). The children it spawns run without it (scripts/asan-mocha-env.js: a leak
# check at a child's exit takes seconds and holds its sockets open meanwhile, and python3, sh and a
# Node that ends with process.exit() all report memory still held at exit). LSan suppressions cannot
# single out such foreign leaks (a suppression matches any frame of a stack, and every allocation of
# our addon runs under Node's and V8's frames), so asan-reports.js attributes each leak to its
# allocation site: it counts when the first frame past the allocator and the C/C++ runtimes is in our
# addon. exitcode=0: a leak report alone does not change the exit code (asan-reports.js judges);
# memory errors still abort (abort_on_error=1). FDPASS_ASAN_LEAKS=0 turns leak detection off.
#
# Before the suite, a self-check triggers each deliberate bug of native/sanitizer_build.cc (built into
# this build only) in a child and requires asan-reports.js to fail on it: a run that cannot fail
# does not pass.
#
# Extra arguments go to mocha (e.g. npm run test:asan -- --grep Channel).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

t0=$SECONDS
step() { printf '\n== [%3ds] %s\n' "$((SECONDS - t0))" "$*"; }
die() { echo "test:asan: $*" >&2; exit 1; }

out="$repo/build-asan"
src="$out/src"
logs="$out/logs"
addon="$src/build/Release/fdpass.node"

# --- 1. the sanitizer build ----------------------------------------------------------------------
step "build native/ with -fsanitize=address,undefined into ${src#"$repo"/}/build"
rm -rf "$src"
mkdir -p "$src"
cp -a binding.gyp native "$src/"
# From build-asan/src, binding.gyp's `require('node-addon-api')` still resolves to ./node_modules.
(cd "$src" && node-gyp rebuild --sanitize=1 --werror=1 -j max --loglevel=warn)
[ -f "$addon" ] || die "no addon at $addon"

libasan="$(gcc -print-file-name=libasan.so)"
[ -e "$libasan" ] || die "gcc has no libasan.so (Debian: apt-get install libasan8)"
libasan="$(readlink -f "$libasan")"
libs="$(ldd "$addon")" # (not `ldd | grep -q`: grep -q exits early, ldd gets SIGPIPE, pipefail fails)
grep -q 'libasan\.so' <<<"$libs" || die "$addon is not linked with libasan"
grep -q 'libubsan\.so' <<<"$libs" || die "$addon is not linked with libubsan"

# --- 2. compile -------------------------------------------------------------------------------------
step "compile lib/ and test/"
tsc -p .
tsc -p test

# --- 3. the suite under the sanitizers --------------------------------------------------------------
rm -rf "$logs"
mkdir -p "$logs"
# abort_on_error: an ASan or UBSan report kills the process with SIGABRT, which no test takes for
# success. stack_trace_format: every frame names its module (asan-reports.js attributes leaks by it).
asan_options="exitcode=0:abort_on_error=1:halt_on_error=1:log_path=$logs/asan"
asan_options+=":stack_trace_format='    #%n %p %F %L {%m}'"
asan_options+=":strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
asan_env=(
  "LD_PRELOAD=$libasan"
  "ASAN_OPTIONS=detect_leaks=${FDPASS_ASAN_LEAKS:-1}:$asan_options"
  "UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
  "FDPASS_ADDON=$addon"
)
reports() { node scripts/asan-reports.js "$logs" "$addon"; }

step "check: a Node process loads the sanitizer build and the ASan runtime"
env "${asan_env[@]}" node -e '
  const maps = require("node:fs").readFileSync("/proc/self/maps", "utf8");
  require("./dist/native");
  const after = require("node:fs").readFileSync("/proc/self/maps", "utf8");
  if (!maps.includes(process.argv[1])) throw new Error("libasan is not preloaded");
  if (!after.includes(process.env.FDPASS_ADDON)) throw new Error("FDPASS_ADDON was not loaded");
  if (after.includes(require("node:path").resolve("build/Release/fdpass.node"))) throw new Error("build/Release was loaded too");
' "$libasan"

step "self-check: each deliberate bug of the sanitizer build fails the run"
for pair in heap-overflow:heap-buffer-overflow use-after-free:heap-use-after-free leak:leak ubsan:ubsan; do
  kind="${pair%%:*}" expect="${pair#*:}"
  rm -rf "$logs" && mkdir -p "$logs"
  # (the subshell's `true`: the canaries abort, and bash would print "Aborted" for each)
  (set +e; env "${asan_env[@]}" node -e 'require("./dist/native").binding.sanitizerCanary(process.argv[1])' "$kind"
   true) >/dev/null 2>&1
  if reports >"$out/self-check.txt"; then
    cat "$out/self-check.txt"
    die "self-check: the $kind canary did not fail the run"
  fi
  grep -q "^REPORT $expect " "$out/self-check.txt" || { cat "$out/self-check.txt"; die "self-check: $kind was not reported as $expect"; }
  echo "  $kind: reported as $expect, fails the run"
done
rm -rf "$logs" && mkdir -p "$logs"

step "mocha under ASan + UBSan (leak detection in the mocha process: ${FDPASS_ASAN_LEAKS:-1})"
set +e
env "${asan_env[@]}" "FDPASS_ASAN_CHILD_OPTIONS=detect_leaks=0:quarantine_size_mb=4:$asan_options" \
  node -r ./scripts/asan-mocha-env.js node_modules/mocha/bin/mocha.js "$@"
mocha_rc=$?
set -e

# --- 4. reports -----------------------------------------------------------------------------------
step "sanitizer reports"
set +e
reports
reports_rc=$?
set -e
echo "mocha exit code: $mocha_rc; logs: ${logs#"$repo"/}; $((SECONDS - t0)) s"
[ "$reports_rc" -eq 0 ] || die "the sanitizers reported (see above)"
[ "$mocha_rc" -eq 0 ] || die "mocha failed ($mocha_rc)"
echo "test:asan: passed, no sanitizer report that counts"
