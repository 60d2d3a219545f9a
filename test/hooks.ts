// Root hooks: every test must leave no new descriptor open, no child running, no socket file behind.
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { openFds, newFds, settle } from './helpers/fds';
import { reapChildren } from './helpers/children';
import { makeTestDir, removeTestDir } from './helpers/tmp';

let baseline = new Map<number, string>();

// Node opens some descriptors lazily on first use (e.g. /dev/null for a spawn): warm them up once
// so the per-test baseline holds only what the test itself opened.
async function warmUp(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    spawnSync(process.execPath, ['-e', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => s.close(() => resolve()));
    });
    await new Promise<void>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.bind(0, '127.0.0.1', () => u.close(() => resolve()));
    });
  }
  await settle();
}

export const mochaHooks = {
  async beforeAll(): Promise<void> {
    await warmUp();
  },
  async beforeEach(): Promise<void> {
    makeTestDir();
    await settle();
    baseline = openFds();
  },
  async afterEach(): Promise<void> {
    const reaped = await reapChildren();
    removeTestDir();
    await settle();
    const leaked = newFds(baseline, openFds());
    if (leaked.length > 0) {
      throw new Error(`test leaked ${leaked.length} descriptor(s):\n  ${leaked.join('\n  ')}`);
    }
    if (reaped > 0) {
      // A test must end its children itself; a survivor is a bug in the test or the code under test.
      throw new Error(`test left ${reaped} child process(es) running`);
    }
  },
};
