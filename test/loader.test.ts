// The addon loader (lib/native.ts): node-gyp-build by default; FDPASS_ADDON names another binary
// (npm run test:asan's sanitizer build). Each case runs in a child, which loads the addon afresh.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { spawnJson } from './helpers/children';
import { tmpPath } from './helpers/tmp';

/** The fdpass.node this process loaded (build/Release, a prebuild, or FDPASS_ADDON's). */
function loadedAddon(): string {
  const maps = fs.readFileSync('/proc/self/maps', 'utf8').split('\n');
  const line = maps.find((l) => l.endsWith('.node') && /fdpass|node\.napi/.test(l));
  assert.ok(line !== undefined, 'this process has loaded the addon');
  return line.slice(line.indexOf('/'));
}

// The child loads fdpass, makes a socket pair through the addon and reports which addon file it mapped.
const CHILD = `
  const fs = require('node:fs');
  try {
    const fdpass = require('fdpass');
    const [a, b] = fdpass.socketPair();
    a.destroy(); b.destroy();
    const addons = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n')
      .filter((l) => l.endsWith('.node')).map((l) => l.slice(l.indexOf('/')));
    console.log(JSON.stringify({ event: 'loaded', addons: [...new Set(addons)] }));
  } catch (e) {
    console.log(JSON.stringify({ event: 'failed', code: e.code, message: e.message }));
  }
`;

async function runChild(addon: string | undefined): Promise<{ event: string; addons?: string[]; code?: string }> {
  const env = { ...process.env };
  if (addon === undefined) delete env.FDPASS_ADDON;
  else env.FDPASS_ADDON = addon;
  const child = spawnJson(process.execPath, ['-e', CHILD], { env });
  const m = await child.next<{ event: string; addons?: string[]; code?: string }>();
  const { code } = await child.exited;
  assert.equal(code, 0, child.stderr());
  return m;
}

describe('addon loader', () => {
  it('FDPASS_ADDON loads the binary it names, and only that one', async () => {
    const copy = tmpPath('copy-of-fdpass.node');
    fs.copyFileSync(loadedAddon(), copy);
    const m = await runChild(copy);
    assert.equal(m.event, 'loaded');
    assert.deepEqual(m.addons, [copy]);
  });

  it('FDPASS_ADDON naming a missing file fails to load instead of falling back', async () => {
    const m = await runChild(tmpPath('missing.node'));
    assert.equal(m.event, 'failed');
    assert.equal(m.code, 'MODULE_NOT_FOUND');
  });

  it('without FDPASS_ADDON (or with it empty) node-gyp-build finds the addon as before', async () => {
    for (const value of [undefined, '']) {
      const m = await runChild(value);
      assert.equal(m.event, 'loaded');
      assert.equal(m.addons?.length, 1);
      assert.match(m.addons?.[0] ?? '', /\/(build\/Release\/fdpass\.node|prebuilds\/linux-[a-z0-9]+\/[^/]+\.node)$/);
    }
  });
});
