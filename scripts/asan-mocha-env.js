// Preloaded (node -r) into the mocha process of npm run test:asan, and only there. ASan read
// ASAN_OPTIONS when this process started, with leak detection on; the children it spawns from now on
// (fixtures, python3, sh) get FDPASS_ASAN_CHILD_OPTIONS instead: every memory error still aborts them,
// but no leak check at exit. A leak check at exit takes seconds (a process.exit() leaves V8's heap
// behind and LSan symbolises it all) and holds the child's sockets open meanwhile, which changes
// what timing-sensitive tests observe; what a child leaks is never our addon's alone to decide anyway.

const childOptions = process.env.FDPASS_ASAN_CHILD_OPTIONS;
if (childOptions !== undefined) {
  process.env.ASAN_OPTIONS = childOptions;
  delete process.env.FDPASS_ASAN_CHILD_OPTIONS;
}
