// Root hooks: every test must leave no new descriptor open, no process running, no socket file behind.
// The checks run as the last step *of the test itself* (its function is wrapped in beforeEach, a
// callback-style test's `done` too), so a leak fails the test that leaked and the rest of the run
// goes on: in mocha a throwing root afterEach drops every later test from the report (seen: 43 of 135
// silently gone after one flake). Processes: every descendant carries FDPASS_TEST_RUN=<this pid> in
// its environment (set here, inherited), so one left running is found in /proc whatever its parent
// now is (a grandchild, a setsid'd or reparented one), unless it cleared its environment. Descriptors
// opened between tests (late async work of the last one) fail the next test of the same suite; those
// a before/after hook left open fail the run at its end. Skipped tests are listed with their reasons
// at the end (helpers/requires.ts: in CI a missing prerequisite fails instead).
import { spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Context, Func, Suite } from 'mocha';
import { openFds, newFds, settle } from './helpers/fds';
import { reapChildren } from './helpers/children';
import { skipped } from './helpers/requires';
import { stopLoads } from './helpers/http';
import { leftByDesign, makeTestDir, removeTestDir, testDir } from './helpers/tmp';

let baseline = new Map<number, string>();
// This process's descriptors once warmed up, and after the last test's cleanup (with its suite).
let runBaseline = new Map<number, string>();
let afterLast: { fds: Map<number, string>; suite: Suite | undefined; title: string } | undefined;

const RUN_MARK = 'FDPASS_TEST_RUN';
process.env[RUN_MARK] = String(process.pid);

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
  // The first Worker opens descriptors Node keeps for later ones.
  await new Promise<void>((resolve) => new Worker('', { eval: true }).once('exit', () => resolve()));
  await settle();
}

/** Processes other than this one whose environment carries this run's mark: "pid cmdline". */
function markedProcesses(): string[] {
  const mark = Buffer.from(`\0${RUN_MARK}=${process.pid}\0`);
  const found: string[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${name}/environ`)]);
      if (env.includes(mark)) found.push(`${name}: ${fs.readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0/g, ' ').trim()}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Ends every marked process (a zombie has an empty environ: only live ones are found). */
async function killMarked(): Promise<string[]> {
  const found = markedProcesses();
  for (const p of found) {
    try {
      process.kill(Number(p.split(':')[0]), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Socket files (at any depth) in the test's directory. */
function socketFiles(dir: string | undefined): string[] {
  if (dir === undefined) return [];
  const found: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isSocket()) continue;
    const name = path.relative(dir, path.join(e.parentPath ?? e.path, e.name));
    if (!leftByDesign(name)) found.push(name);
  }
  return found;
}

// Ends the test's children and temporary directory; returns what it left behind.
async function cleanUp(): Promise<string[]> {
  const problems: string[] = [];
  const stopping = stopLoads(); // their requests to children that are killed next fail at once
  const reaped = await reapChildren();
  const loads = await stopping;
  // Descendants the reaper does not know (grandchildren, a killed child's orphans): wait briefly for
  // those that are ending on their own, then kill the rest.
  let descendants = markedProcesses();
  for (let i = 0; i < 20 && descendants.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 25));
    descendants = markedProcesses();
  }
  if (descendants.length > 0) descendants = await killMarked();
  const sockets = socketFiles(testDir());
  removeTestDir();
  await settle();
  const leaked = newFds(baseline, openFds());
  if (leaked.length > 0) problems.push(`test leaked ${leaked.length} descriptor(s):\n  ${leaked.join('\n  ')}`);
  // A test must end its children itself; a survivor is a bug in the test or the code under test.
  if (reaped > 0) problems.push(`test left ${reaped} child process(es) running`);
  if (descendants.length > 0)
    problems.push(`test left ${descendants.length} descendant process(es) running:\n  ${descendants.join('\n  ')}`);
  if (loads > 0) problems.push(`test left ${loads} load generator(s) running`);
  if (sockets.length > 0) problems.push(`test left ${sockets.length} socket file(s): ${sockets.join(', ')}`);
  return problems;
}

/** Wraps a test's function so that its last step is the cleanup check (sync, promise or callback). */
function wrap(fn: Func): Func {
  if (fn.length > 0) {
    // Same arity, so mocha still passes `done`.
    return function (this: Context, done: (err?: unknown) => void): void {
      (fn as (this: Context, d: (err?: unknown) => void) => void).call(this, (err?: unknown) => {
        if (err !== undefined && err !== null) return done(err);
        cleanUp().then((problems) => done(problems.length > 0 ? new Error(problems.join('\n')) : undefined), done);
      });
    } as Func;
  }
  return async function (this: Context): Promise<unknown> {
    const result: unknown = await (fn as (this: Context) => unknown).call(this);
    const problems = await cleanUp();
    if (problems.length > 0) throw new Error(problems.join('\n'));
    return result;
  } as Func;
}

export const mochaHooks = {
  async beforeAll(): Promise<void> {
    await warmUp();
    runBaseline = openFds();
  },
  async afterAll(): Promise<void> {
    exitIfHeldOpen();
    const skips = skipped();
    if (skips.length > 0) {
      const n = skips.reduce((sum, s) => sum + s.tests, 0);
      console.log(
        `\n  ${n} skipped (a prerequisite is missing):\n${skips.map((s) => `    ${s.title}${s.tests > 1 ? ` (${s.tests} tests)` : ''}: needs ${s.reason}`).join('\n')}`,
      );
    }
    await settle();
    const leaked = newFds(runBaseline, openFds());
    const left = await killMarked();
    const problems: string[] = [];
    if (leaked.length > 0)
      problems.push(
        `${leaked.length} descriptor(s) open at the end of the run (left by a before/after hook, or by a test that failed):\n  ${leaked.join('\n  ')}`,
      );
    if (left.length > 0)
      problems.push(`${left.length} process(es) running at the end of the run (left by a before/after hook):\n  ${left.join('\n  ')}`);
    if (problems.length > 0) throw new Error(problems.join('\n'));
  },
  async beforeEach(this: Context): Promise<void> {
    makeTestDir();
    await settle();
    baseline = openFds();
    const test = this.currentTest;
    // Opened since the last test of this suite ended (no before/after hook ran in between): its late work.
    const late = afterLast !== undefined && afterLast.suite === test?.parent ? newFds(afterLast.fds, baseline) : [];
    const lateTitle = afterLast?.title;
    const fn = test?.fn;
    if (test === undefined || fn === undefined) return;
    const wrapped = wrap(fn);
    test.fn =
      late.length === 0
        ? wrapped
        : (function (this: Context): never {
            throw new Error(`descriptor(s) opened after "${lateTitle}" ended (its late async work):\n  ${late.join('\n  ')}`);
          } as Func);
  },
  async afterEach(this: Context): Promise<void> {
    // After a failed (or skipped) test: still end its children and files, but never throw here.
    const problems = await cleanUp();
    if (problems.length > 0 && this.currentTest?.state !== 'failed') {
      console.error(`after "${this.currentTest?.fullTitle()}": ${problems.join('\n')}`);
    }
    afterLast = { fds: openFds(), suite: this.currentTest?.parent, title: this.currentTest?.fullTitle() ?? '' };
  },
};
