// npm's install step (package.json "install"). On Linux: node-gyp-build, which keeps a prebuild that
// loads, else compiles native/ with node-gyp. Elsewhere: nothing. fdpass is Linux-only, but installing
// it must not fail on a macOS or Windows laptop (an app's dev dependencies install there); the package
// loads there and every call fails with ERR_FDPASS_UNSUPPORTED_PLATFORM (lib/native.ts).
//
// FDPASS_TEST_PLATFORM=darwin-arm64 (or win32-x64, ...) pretends to be that platform, for tests only
// (npm run test:package, test/platform.test.ts); lib/native.ts honours it too.
const forced = process.env.FDPASS_TEST_PLATFORM;
const [platform, arch = process.arch] = forced ? forced.split('-') : [process.platform, process.arch];

if (platform !== 'linux') {
  console.log(
    `fdpass: nothing to build on ${platform}-${arch}: fdpass runs on Linux only; calls fail with ERR_FDPASS_UNSUPPORTED_PLATFORM`,
  );
} else {
  require('node-gyp-build/bin.js');
}
