// Root hooks: every test must leave no new descriptor open, no child running, no socket file behind.
// The checks run as the last step *of the test itself* (its function is wrapped in beforeEach), so a
// leak fails the test that leaked and the rest of the run goes on: in mocha a throwing root
// afterEach drops every later test from the report (seen: 43 of 135 silently gone after one flake).
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { Context, Func } from 'mocha';
import { openFds, newFds, settle } from './helpers/fds';
import { reapChildren } from './helpers/children';
import { stopLoads } from './helpers/http';
import { makeTestDir, removeTestDir } from './helpers/tmp';

let baseline = new Map<number, string>();

// How long the process may live on after the last test: a test that failed half-way leaves its own
// servers and channels open (only children and files are the hooks'), and without this mocha would
// wait on them forever instead of exiting with its status (seen: 12 minutes after "7 failing").
const EXIT_GRACE_MS = 10_000;

function describeHandle(h: unknown): string {
  const o = h as { constructor?: { name?: string }; address?: () => unknown; spawnargs?: string[]; pid?: number };
  let what = o.constructor?.name ?? typeof h;
  try {
    if (typeof o.address === 'function') what += ` ${JSON.stringify(o.address())}`;
  } catch {
    // not bound
  }
  if (o.pid !== undefined) what += ` pid ${o.pid}: ${(o.spawnargs ?? []).join(' ')}`;
  return what;
}

// Armed after the last test, unref'd: it fires only if something else still holds the loop open.
function exitIfHeldOpen(): void {
  setTimeout(() => {
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
    console.error(
      `\nstill running ${EXIT_GRACE_MS / 1000} s after the last test, held open by:\n  ${handles.map(describeHandle).join('\n  ')}\n` +
        `${process.getActiveResourcesInfo().join(', ')}\nexiting with status 1 (a test left these open: usually one that failed)`,
    );
    void reapChildren().finally(() => {
      // After mocha's own 'exit' listener, which sets the exit code to the number of failures.
      process.once('exit', () => {
        process.exitCode = Math.max(Number(process.exitCode ?? 0), 1);
      });
      process.exit(1);
    });
  }, EXIT_GRACE_MS).unref();
}

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

// Ends the test's children and temporary directory; returns what it left behind.
async function cleanUp(): Promise<string[]> {
  const problems: string[] = [];
  const stopping = stopLoads(); // their requests to children that are killed next fail at once
  const reaped = await reapChildren();
  const loads = await stopping;
  removeTestDir();
  await settle();
  const leaked = newFds(baseline, openFds());
  if (leaked.length > 0) problems.push(`test leaked ${leaked.length} descriptor(s):\n  ${leaked.join('\n  ')}`);
  // A test must end its children itself; a survivor is a bug in the test or the code under test.
  if (reaped > 0) problems.push(`test left ${reaped} child process(es) running`);
  if (loads > 0) problems.push(`test left ${loads} load generator(s) running`);
  return problems;
}

export const mochaHooks = {
  async beforeAll(): Promise<void> {
    await warmUp();
  },
  afterAll(): void {
    exitIfHeldOpen();
  },
  async beforeEach(this: Context): Promise<void> {
    makeTestDir();
    await settle();
    baseline = openFds();
    const test = this.currentTest;
    const fn = test?.fn;
    if (test === undefined || fn === undefined || fn.length > 0) return; // callback-style tests: afterEach only
    test.fn = async function (this: Context): Promise<unknown> {
      const result: unknown = await (fn as (this: Context) => unknown).call(this);
      const problems = await cleanUp();
      if (problems.length > 0) throw new Error(problems.join('\n'));
      return result;
    } as Func;
  },
  async afterEach(this: Context): Promise<void> {
    // After a failed (or skipped) test: still end its children and files, but never throw here.
    const problems = await cleanUp();
    if (problems.length > 0 && this.currentTest?.state !== 'failed') {
      console.error(`after "${this.currentTest?.fullTitle()}": ${problems.join('\n')}`);
    }
  },
};
