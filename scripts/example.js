// npm run example -- NAME [ARGS...]: runs examples/NAME.ts, compiled to .examples-out/NAME.js by the
// script's tsc steps (Node 20 does not run .ts files).
const fs = require('node:fs');
const path = require('node:path');

const out = path.join(__dirname, '..', '.examples-out');
const name = (process.argv[2] ?? '').replace(/\.ts$/, '').replace(/^examples\//, '');
const file = path.join(out, `${name}.js`);
if (name === '' || !fs.existsSync(file)) {
  const names = fs
    .readdirSync(out)
    .filter((f) => f.endsWith('.js'))
    .map((f) => f.slice(0, -3));
  console.error(`usage: npm run example -- NAME [ARGS...], NAME one of: ${names.join(', ')}`);
  process.exit(2);
}
process.argv.splice(1, 2, file); // the example sees its own arguments as process.argv[2...]
require(file);
