// What a child of another uid (nobody) needs to run, copied where that uid can read it. The checkout
// may sit in a directory other users cannot traverse (a root user's home, `mktemp -d`): then nobody
// cannot open a fixture there, nor load the package the fixture imports. One copy per test process:
// the package (package.json for the self-reference, dist/, the addon, node-gyp-build), the compiled
// tests (fixtures import helpers) and the Python fixtures, world-readable, removed at exit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.join(__dirname, '..', '..', '..');
let root: string | undefined;

function copyIn(from: string, to: string): void {
  if (fs.existsSync(from)) fs.cpSync(from, to, { recursive: true });
}

// a+rX over the copy: a clone made under umask 077 has owner-only files.
function openUp(p: string): void {
  const st = fs.statSync(p);
  fs.chmodSync(p, st.mode | (st.isDirectory() ? 0o555 : 0o444));
  if (st.isDirectory()) for (const e of fs.readdirSync(p)) openUp(path.join(p, e));
}

/** The root of the world-readable copy (made on first use). */
export function otherUidRoot(): string {
  if (root !== undefined) return root;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-other-uid-'));
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  for (const p of ['package.json', 'dist', 'prebuilds', 'build/Release/fdpass.node', 'node_modules/node-gyp-build', 'test/fixtures'])
    copyIn(path.join(REPO, p), path.join(dir, p));
  copyIn(path.join(REPO, '.test-out', 'test'), path.join(dir, '.test-out', 'test'));
  // `npm run test:asan` points every process at its sanitizer build.
  const addon = process.env.FDPASS_ADDON;
  if (addon) copyIn(addon, path.join(dir, 'addon', path.basename(addon)));
  openUp(dir);
  root = dir;
  return dir;
}

/** An argument for a child of another uid: a path in the checkout becomes the copy's, anything else stays. */
export function forOtherUid(arg: string): string {
  return path.isAbsolute(arg) && !path.relative(REPO, arg).startsWith('..') ? otherUidPath(arg) : arg;
}

/** Where `file` of the checkout (absolute) is in the copy. */
export function otherUidPath(file: string): string {
  const rel = path.relative(REPO, file);
  if (rel.startsWith('..')) throw new Error(`${file} is not in the checkout`);
  return path.join(otherUidRoot(), rel);
}

/** The environment and working directory for a child of another uid: nothing of the checkout. */
export function otherUidSpawn(env: NodeJS.ProcessEnv): { env: NodeJS.ProcessEnv; cwd: string } {
  const dir = otherUidRoot();
  const addon = env.FDPASS_ADDON;
  return { env: addon ? { ...env, FDPASS_ADDON: path.join(dir, 'addon', path.basename(addon)) } : env, cwd: dir };
}
