'use strict';
// An fdpass installed as on macOS or Windows, run with FDPASS_TEST_PLATFORM=PLATFORM-ARCH: require
// works, the types are there, a sync call throws and a promise call rejects
// ERR_FDPASS_UNSUPPORTED_PLATFORM naming the platform, and `fdpass run` prints it and exits 1.
//
//   FDPASS_TEST_PLATFORM=darwin-arm64 node unsupported.cjs    (in the project where fdpass is installed)
//
// Prints one line per check; exits 1 if any failed.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const target = process.env.FDPASS_TEST_PLATFORM;
const expected = `unsupported platform ${target}: fdpass runs on Linux only`;
let failures = 0;
function check(ok, what, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${ok || !detail ? '' : `: ${detail}`}`);
  if (!ok) failures++;
}
function isUnsupported(err) {
  return err?.code === 'ERR_FDPASS_UNSUPPORTED_PLATFORM' && err.name === 'FdpassError' && err.message.startsWith(expected);
}

async function main() {
  const fdpass = require('fdpass');
  check(true, 'require("fdpass") works');
  const pkgDir = path.dirname(require.resolve('fdpass/package.json'));
  const dts = fs.readFileSync(path.join(pkgDir, 'dist', 'index.d.ts'), 'utf8');
  const errorsDts = fs.readFileSync(path.join(pkgDir, 'dist', 'errors.d.ts'), 'utf8');
  check(
    dts.includes('export declare function closeFd') && errorsDts.includes("'ERR_FDPASS_UNSUPPORTED_PLATFORM'"),
    'the types are there (dist/index.d.ts, the error code in dist/errors.d.ts)',
  );

  try {
    fdpass.socketPair();
    check(false, 'socketPair() throws', 'it returned');
  } catch (err) {
    check(isUnsupported(err), `socketPair() throws ${err.code}: ${err.message}`, err.stack);
  }

  let promise;
  try {
    promise = fdpass.connect(path.join(pkgDir, 'no-such.sock'));
  } catch (err) {
    check(false, 'connect() returns a promise', `it threw synchronously: ${err.stack}`);
  }
  if (promise) {
    await promise.then(
      () => check(false, 'connect() rejects', 'it resolved'),
      (err) => check(isUnsupported(err), `connect() rejects with ${err.code}`, err.stack),
    );
  }

  const bin = path.join(path.dirname(require.resolve('fdpass/package.json')), '..', '.bin', 'fdpass');
  const run = spawnSync(bin, ['run', '--listen', 'tcp:127.0.0.1:0', '--', 'true'], { encoding: 'utf8' });
  check(
    run.status === 1 && run.stderr === `fdpass: ${expected} (SCM_RIGHTS, SO_REUSEPORT, systemd)\n`,
    `node_modules/.bin/fdpass run exits ${run.status}: ${run.stderr.trim()}`,
    run.error?.message ?? '',
  );
}

main().then(
  () => process.exit(failures === 0 ? 0 : 1),
  (err) => {
    console.log(`FAIL ${err.stack}`);
    process.exit(1);
  },
);
