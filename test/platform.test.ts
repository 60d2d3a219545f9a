// Off Linux (macOS, Windows) fdpass installs and loads, and each call that needs Linux fails with one
// error, ERR_FDPASS_UNSUPPORTED_PLATFORM. A child pretends to be another platform with
// FDPASS_TEST_PLATFORM (test-only, honoured by lib/native.ts and scripts/install.js).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as fdpass from 'fdpass';
import { runFixture, spawnJson } from './helpers/children';
import { ROOT } from './helpers/docs';
import { tmpPath } from './helpers/tmp';
import type { Outcome } from './fixtures/unsupported-platform';

interface Report {
  outcomes: Record<string, Outcome>;
  exports: Record<string, unknown>;
  constants: Record<string, number>;
}

// What each call of test/fixtures/unsupported-platform.ts must do there.
const THROWS = [
  'socketPair',
  'openChannel',
  'closeFds',
  'closeFd',
  'dupFd',
  'inspect',
  'toSocket',
  'upgrader',
  'spawnActivated',
  'distribute',
];
const REJECTS = [
  'connect',
  'listen',
  'bindDgram',
  'sendFd',
  'sendFds',
  'recvFd',
  'recvFds',
  'adopt',
  'toServer',
  'toDgram',
  'listenReusePort',
  'bindReusePort',
  'serve',
  'take',
  'warmUp',
];
/** Readers of the environment systemd or an upgrader sets: they answer as on Linux without either. */
const AS_WITHOUT_SYSTEMD: Record<string, Pick<Outcome, 'how' | 'value'>> = {
  inherit: { how: 'resolved', value: null },
  listenFds: { how: 'returned', value: [] },
  adoptListenFds: { how: 'resolved', value: [] },
  notify: { how: 'resolved', value: false },
  storeFds: { how: 'resolved', value: false },
  removeStoredFds: { how: 'resolved', value: false },
  startWatchdog: { how: 'returned', value: null },
  watchdogInterval: { how: 'returned', value: null },
};
/** Plain JavaScript: works anywhere. */
const PLAIN: Record<string, Pick<Outcome, 'how' | 'value'>> = {
  drain: { how: 'resolved' },
  notifyMessage: { how: 'returned', value: 'READY=1' },
  fdOf: { how: 'returned', value: 7 },
};
/** Classes whose instances only the calls above make (their constructors are internal), and the errors. */
const CLASSES = [
  'Channel',
  'ChannelServer',
  'Distributor',
  'HandoffServer',
  'Inheritance',
  'Upgrader',
  'Watchdog',
  'FdpassError',
  'FdpassSystemError',
];

/** The environment of a process that systemd, fdpass run or an upgrader did not start. */
function plainEnv(platform: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FDPASS_TEST_PLATFORM: platform };
  for (const k of Object.keys(env)) {
    if (/^(LISTEN_|NOTIFY_SOCKET$|WATCHDOG_)/.test(k) || k === fdpass.handoff.UPGRADE_SOCKET_ENV) delete env[k];
  }
  return env;
}

async function report(platform: string): Promise<Report> {
  const child = runFixture('unsupported-platform', [path.dirname(tmpPath('x'))], { env: plainEnv(platform) });
  const r = await child.expect<Report>('done');
  assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
  return r;
}

function assertUnsupported(name: string, o: Outcome, how: 'threw' | 'rejected', platform: string): void {
  assert.equal(o.how, how, `${name}: ${JSON.stringify(o)}`);
  assert.equal(o.code, 'ERR_FDPASS_UNSUPPORTED_PLATFORM', `${name}: ${JSON.stringify(o)}`);
  assert.equal(o.fdpassError, true, `${name} fails with an FdpassError`);
  assert.ok(o.message?.startsWith(`unsupported platform ${platform}: fdpass runs on Linux only`), `${name}: ${o.message}`);
}

function fdpassCli(platform: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnJson(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), ...args], { env: plainEnv(platform) });
  const out: string[] = [];
  child.proc.stdout?.on('data', (d: Buffer) => out.push(d.toString()));
  return child.exited.then(({ code }) => ({ code, stdout: out.join(''), stderr: child.stderr() }));
}

describe('platform: off Linux', () => {
  for (const platform of ['darwin-arm64', 'win32-x64']) {
    it(`${platform}: sync calls throw ERR_FDPASS_UNSUPPORTED_PLATFORM`, async () => {
      const r = await report(platform);
      for (const name of THROWS) assertUnsupported(name, r.outcomes[name]!, 'threw', platform);
    });

    it(`${platform}: promise calls reject with ERR_FDPASS_UNSUPPORTED_PLATFORM, never throw`, async () => {
      const r = await report(platform);
      for (const name of REJECTS) assertUnsupported(name, r.outcomes[name]!, 'rejected', platform);
    });
  }

  it('readers of the systemd environment answer as on Linux without systemd', async () => {
    const r = await report('darwin-arm64');
    for (const [name, expected] of Object.entries(AS_WITHOUT_SYSTEMD)) assert.deepEqual(r.outcomes[name], expected, name);
  });

  it('plain JavaScript helpers work', async () => {
    const r = await report('darwin-arm64');
    for (const [name, expected] of Object.entries(PLAIN)) assert.deepEqual(r.outcomes[name], expected, name);
  });

  it('every runtime export is one of the kinds above; values equal Linux ones', async () => {
    const r = await report('darwin-arm64');
    const kinds = new Set([...THROWS, ...REJECTS, ...Object.keys(AS_WITHOUT_SYSTEMD), ...Object.keys(PLAIN), ...CLASSES]);
    assert.deepEqual(Object.keys(r.outcomes).sort(), [...kinds].filter((k) => !CLASSES.includes(k)).sort(), 'the fixture calls each');
    const here = (name: string): unknown => {
      const [a, b] = name.split('.') as [string, string | undefined];
      const v = (fdpass as unknown as Record<string, Record<string, unknown>>)[a]!;
      return b === undefined ? v : v[b];
    };
    for (const [name, v] of Object.entries(r.exports)) {
      if (v === 'function') assert.ok(kinds.has(name.split('.').pop()!), `${name}: a function this test does not classify`);
      else assert.deepEqual(v, here(name), name);
    }
    const linux = Object.entries(fdpass).flatMap(([name, v]) =>
      typeof v === 'object' && v !== null ? Object.keys(v).map((m) => `${name}.${m}`) : [name],
    );
    assert.deepEqual(Object.keys(r.exports).sort(), linux.sort(), 'the same exports as on Linux');
  });

  it("the built-in constants equal the addon's", async () => {
    const r = await report('win32-x64');
    const { constants } = require(path.join(ROOT, 'dist', 'native.js')) as { constants: Record<string, number> };
    assert.deepEqual(r.constants, { ...constants });
  });

  it('fdpass run prints the error and exits 1 without starting the command', async () => {
    const marker = tmpPath('started');
    const r = await fdpassCli('darwin-arm64', ['run', '--listen', 'tcp:127.0.0.1:0', '--', '/bin/sh', '-c', `echo > ${marker}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, 'fdpass: unsupported platform darwin-arm64: fdpass runs on Linux only (SCM_RIGHTS, SO_REUSEPORT, systemd)\n');
    assert.equal(fs.existsSync(marker), false, 'the command was not started');
  });

  it('fdpass reload fails the same; --help and --version still work', async () => {
    const reload = await fdpassCli('win32-x64', ['reload', tmpPath('control')]);
    assert.equal(reload.code, 1);
    assert.match(reload.stderr, /^fdpass: unsupported platform win32-x64: /);
    const help = await fdpassCli('win32-x64', ['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^ {2}fdpass run /m);
    const version = await fdpassCli('win32-x64', ['--version']);
    assert.equal(version.code, 0, version.stderr);
  });
});
