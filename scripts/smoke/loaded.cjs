'use strict';
// Which addon binary fdpass loaded (node-gyp-build's choice), for the smoke test's checks.
const path = require('node:path');

require('fdpass'); // loads the addon: throws here if no binary fits this Node
const pkgDir = path.dirname(require.resolve('fdpass/package.json'));
const binding = path.relative(pkgDir, require('node-gyp-build').path(pkgDir));

function log(record) {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ...record })}\n`);
}
log({ event: 'loaded', node: process.version, arch: process.arch, binding });

module.exports = { log };
