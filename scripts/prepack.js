// npm pack / npm publish (prepack): refuse to produce a tarball without both prebuilds, or with
// prebuilds older than the native sources, since such a package silently compiles at install (or
// ships a stale binary). FDPASS_PACK_WITHOUT_PREBUILDS=1 packs anyway (the install then builds from
// source with node-gyp).
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const PREBUILDS = ['prebuilds/linux-x64/fdpass.glibc.node', 'prebuilds/linux-arm64/fdpass.glibc.node'];

if (process.env.FDPASS_PACK_WITHOUT_PREBUILDS === '1') {
  console.error('prepack: FDPASS_PACK_WITHOUT_PREBUILDS=1: packing without checking prebuilds/');
  process.exit(0);
}

function newestSource(dir) {
  let newest = { file: '', mtime: 0 };
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    const n = entry.isDirectory() ? newestSource(file) : { file, mtime: fs.statSync(file).mtimeMs };
    if (n.mtime > newest.mtime) newest = n;
  }
  return newest;
}

const problems = [];
const sources = [
  newestSource(path.join(root, 'native')),
  { file: path.join(root, 'binding.gyp'), mtime: fs.statSync(path.join(root, 'binding.gyp')).mtimeMs },
];
const source = sources.reduce((a, b) => (b.mtime > a.mtime ? b : a));
for (const rel of PREBUILDS) {
  const file = path.join(root, rel);
  if (!fs.existsSync(file)) problems.push(`${rel} is missing`);
  else if (fs.statSync(file).mtimeMs < source.mtime) problems.push(`${rel} is older than ${path.relative(root, source.file)}`);
}
if (problems.length > 0) {
  console.error(
    `prepack: refusing to pack: ${problems.join('; ')}.\n` +
      'Run `npm run prebuilds` first (linux-x64 and a cross-compiled linux-arm64), or set\n' +
      'FDPASS_PACK_WITHOUT_PREBUILDS=1 to pack a package that compiles the addon at install.',
  );
  process.exit(1);
}
