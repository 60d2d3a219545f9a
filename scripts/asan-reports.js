// Reads the sanitizer logs of a test:asan run (one file per reporting process) and decides what fails
// the run. Usage: node scripts/asan-reports.js <logdir> <addon.node>. Exit code 1 when any report counts.
//
// Counts: every AddressSanitizer error (overflow, use-after-free, ...), every UBSan runtime error,
// anything unrecognised, and every leak whose allocation site is our addon: the first frame past the
// allocator and the C/C++ runtimes lies in <addon.node> (frames carry their module, see
// stack_trace_format in test-asan.sh).
// Does not count: leaks allocated elsewhere. Children such as python3, sh and a Node that ends with
// process.exit() (which skips the isolate's teardown) report V8/Python/bash memory still held at exit;
// LSan suppressions cannot single those out, because a suppression matches any frame of the stack and
// every stack of our addon runs under Node's and V8's frames too. They are listed, not counted.

const fs = require('node:fs');
const path = require('node:path');

const [logdir, addon] = process.argv.slice(2);
if (!logdir || !addon) {
  console.error('usage: node scripts/asan-reports.js <logdir> <addon.node>');
  process.exit(2);
}
const addonPath = path.resolve(addon);
// Modules that sit between an allocation and whoever asked for it.
const RUNTIME = /\/(libasan|libubsan|libc|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.so[.\d]*$/;

const frameModule = (line) => {
  const m = /\{([^}]*)\}\s*$/.exec(line)?.[1] ?? '';
  return m === '<null>' ? '' : m;
};

/** Splits one LeakSanitizer report into its leak blocks and classifies each. */
function leaks(text) {
  const out = [];
  const blocks = text.split(/\n(?=(?:Direct|Indirect) leak of )/).slice(1);
  for (const block of blocks) {
    const lines = block.split('\n');
    const head = lines[0];
    const frames = lines.slice(1).filter((l) => /^\s+#\d+ /.test(l));
    const site = frames.find((l) => !RUNTIME.test(frameModule(l)));
    const ours = site !== undefined && frameModule(site) === addonPath;
    const modules = frames.map(frameModule).filter((m) => m !== '' && !RUNTIME.test(m));
    out.push({ head, ours, text: [head, ...frames].join('\n'), program: modules[modules.length - 1] });
  }
  return out;
}

let counted = 0;
const foreign = new Map();
const files = fs.existsSync(logdir) ? fs.readdirSync(logdir).sort() : [];
for (const name of files) {
  const file = path.join(logdir, name);
  const text = fs.readFileSync(file, 'utf8');
  const isLeakOnly =
    /ERROR: LeakSanitizer: detected memory leaks/.test(text) &&
    !/ERROR: AddressSanitizer|runtime error:|CHECK failed|ERROR: LeakSanitizer: (?!detected memory leaks)/.test(text);
  if (!isLeakOnly) {
    counted++;
    const kind = /ERROR: AddressSanitizer: ([\w-]+)/.exec(text)?.[1] ?? (/runtime error:/.test(text) ? 'ubsan' : 'unrecognised');
    console.log(`REPORT ${kind} (${name}):\n${text}`);
    continue;
  }
  const all = leaks(text);
  const ours = all.filter((l) => l.ours);
  if (ours.length > 0) {
    counted++;
    console.log(`REPORT leak (${name}): ${ours.length} leak(s) allocated by the addon:\n`);
    for (const l of ours) console.log(`${l.text}\n`);
  }
  if (all.length > ours.length) {
    const program = all.find((l) => l.program !== undefined)?.program ?? 'unknown program';
    const f = foreign.get(program) ?? { processes: 0, leaks: 0 };
    foreign.set(program, { processes: f.processes + 1, leaks: f.leaks + all.length - ours.length });
  }
}
for (const [program, f] of foreign) {
  console.log(`not counted: ${f.leaks} leak(s) allocated outside the addon, in ${f.processes} process(es) of ${program}`);
}
console.log(`sanitizer reports that count: ${counted} (log files: ${files.length})`);
process.exit(counted > 0 ? 1 : 0);
