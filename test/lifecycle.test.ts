// Lifecycle: process exit with channels open, ref/unref, garbage collection of unclosed channels,
// module formats (require, ESM import, TypeScript types from dist/) and NODE_DEBUG=fdpass. (Worker
// threads: lifecycle-workers.test.ts.)
// Scenarios that could abort run in a child process, so that an abort fails one test, not the run.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { socketPair } from 'fdpass';
import { exitWithin, runFixture, spawnJson, fixturesDir, type Fixture } from './helpers/children';
import { leavesSocketFiles, tmpPath } from './helpers/tmp';
import { sleep } from './helpers/wait';

const repoRoot = path.resolve(__dirname, '..', '..');
/** Fixtures that are not TypeScript (.mjs, .cjs) run from the source tree. */
const sourceFixtures = path.join(repoRoot, 'test', 'fixtures');

/** Signs of a native crash in a child's stderr. */
const CRASH = /FATAL ERROR|Aborted|Assertion|Segmentation fault|core dumped|Native stack trace/;

/** Every line a child printed, until its stdout ends. */
async function allLines(child: Fixture): Promise<Array<Record<string, unknown>>> {
  const lines: Array<Record<string, unknown>> = [];
  for (;;) {
    try {
      lines.push(await child.next(30000));
    } catch {
      return lines;
    }
  }
}

describe('lifecycle', () => {
  describe('process exit', () => {
    // A server, a connected channel (receive() pending, sends queued) and a socketPair are open.
    it('process.exit(0) with servers and channels open and busy: exit code 0, nothing on stderr', async () => {
      leavesSocketFiles(/^exit\.sock$/, "process.exit() skips close(): the server's path stays, as a net.Server's does at exit");
      const child = runFixture('lifecycle-child', ['exit', tmpPath('exit.sock')]);
      const open = await child.expect<{ queued: number; fds: number[] }>('open');
      assert.ok(open.queued > 0, 'sends were queued at exit');
      assert.ok(open.fds.every((fd) => fd >= 0));
      assert.deepEqual(await child.exited, { code: 0, signal: null });
      assert.equal(child.stderr(), '');
    });

    it('process.exit(0) from inside a poll callback while messages flow: code 0, nothing on stderr', async () => {
      leavesSocketFiles(/^exit-busy\.sock$/, "process.exit() skips close(): the server's path stays, as a net.Server's does at exit");
      const child = runFixture('lifecycle-child', ['exit-busy', tmpPath('exit-busy.sock')]);
      const exiting = await child.expect<{ bounces: number; queued: number }>('exiting');
      assert.equal(exiting.bounces, 500);
      assert.ok(exiting.queued > 0);
      assert.deepEqual(await child.exited, { code: 0, signal: null });
      assert.equal(child.stderr(), '');
    });

    // The channels wait in receive() with their peer alive; the server listens.
    it("unref()'d channels and server do not keep the process alive: it exits 0", async () => {
      leavesSocketFiles(
        /^unref\.sock$/,
        "the process ends with its unref()'d server never closed: its path stays, as a net.Server's does at exit",
      );
      const [mine, theirs] = socketPair();
      const child = runFixture('lifecycle-child', ['unref', tmpPath('unref.sock')], { stdio: ['pipe', 'pipe', 'pipe', theirs.fd] });
      await theirs.close(); // the child has its own copy as fd 3
      await child.expect('waiting');
      const exit = await exitWithin(child, 5000, "unref()'d channels kept it alive");
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.equal(child.stderr(), '');
      // Our end stayed open and silent all along; the child's end closed when it exited.
      await assert.rejects(mine.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
      await mine.close();
    });

    // main returns while the channel waits in receive() with a message already readable.
    it("an unref()'d channel with a readable message does not keep the process alive or abort it", async () => {
      // Environment teardown runs the loop once more to close handles; the readable poll fires then,
      // when JavaScript can no longer be called.
      const child = runFixture('lifecycle-child', ['unref-pending']);
      await child.expect('waiting');
      const exit = await exitWithin(child, 5000, "an unref()'d channel kept it alive");
      assert.doesNotMatch(child.stderr(), CRASH, `the child crashed at exit:\n${child.stderr()}`);
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.equal(child.stderr(), '');
    });

    it("a ref'd channel waiting in receive() keeps the process alive until the peer closes; then it exits 0", async () => {
      const [mine, theirs] = socketPair();
      const child = runFixture('lifecycle-child', ['ref'], { stdio: ['pipe', 'pipe', 'pipe', theirs.fd] });
      await theirs.close();
      await child.expect('waiting');
      await sleep(500);
      assert.equal(child.proc.exitCode, null, 'the child exited while its channel waited for a message');
      assert.equal(child.proc.signalCode, null);
      await mine.close();
      const ended = await child.expect<{ outcome: string; closed: boolean }>('ended');
      assert.equal(ended.outcome, 'ERR_FDPASS_CLOSED');
      assert.equal(ended.closed, true);
      assert.deepEqual(await exitWithin(child, 5000, 'its channel saw EOF'), { code: 0, signal: null });
      assert.equal(child.stderr(), '');
    });
  });

  describe('garbage collection', () => {
    // One run of the lifecycle-gc fixture: its channels dropped, gc() called; every descriptor they
    // held (and `extraPerPair` unread fds per pair) open before collection, none after.
    async function droppedAndCollected(mode: 'dropped' | 'unread', extraPerPair: number): Promise<void> {
      const child = spawnJson(process.execPath, ['--expose-gc', path.join(fixturesDir, 'lifecycle-gc.js'), mode]);
      const r = await child.expect<{
        pairs: number;
        before: number;
        held: number;
        after: number;
        targetsBefore: Record<string, string>;
        targetsAfter: Record<string, string>;
      }>('gc');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.equal(
        r.held,
        r.before + (2 + extraPerPair) * r.pairs,
        'both ends of each pair (and its unread fds) were open before collection',
      );
      const kept = Object.entries(r.targetsAfter)
        .filter(([fd, target]) => r.targetsBefore[fd] !== target)
        .map(([fd, target]) => `${fd} -> ${target}`);
      assert.deepEqual(kept, [], `descriptors of dropped channels still open after gc() (${r.after} open, ${r.before} before)`);
      assert.equal(r.after, r.before);
    }

    it('channels dropped without close() (24 socket pairs, some used) give their fds back once collected', async () => {
      await droppedAndCollected('dropped', 0);
    });

    // 8 pairs, 2 of 3 messages untaken in each inbox.
    it('channels dropped with unread fd-carrying messages give those fds back once collected', async () => {
      await droppedAndCollected('unread', 2);
    });

    it("a channel held only by a pending receive() or a 'message' listener survives gc() and delivers", async () => {
      const child = spawnJson(process.execPath, ['--expose-gc', path.join(fixturesDir, 'lifecycle-gc.js'), 'pinned']);
      const r = await child.expect<{
        got: string;
        heard: string;
        secondOutcome: string;
        before: number;
        after: number;
        targetsBefore: unknown;
        targetsAfter: unknown;
      }>('pinned');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.equal(r.got, 'after gc (receive)');
      assert.equal(r.heard, 'after gc (listener)');
      assert.equal(r.secondOutcome, 'ERR_FDPASS_CLOSED');
      assert.deepEqual(r.targetsAfter, r.targetsBefore);
      assert.equal(r.after, r.before);
    });
  });

  describe('module formats', () => {
    it("CommonJS: require('fdpass') from a plain .cjs script", async () => {
      const child = spawnJson(process.execPath, [path.join(sourceFixtures, 'lifecycle-cjs.cjs')]);
      const r = await child.expect<{
        types: Record<string, string>;
        data: string;
        kind: string;
        error: { code: string; isSystemError: boolean };
      }>('cjs');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.deepEqual(r.types, {
        sendFd: 'function',
        recvFd: 'function',
        socketPair: 'function',
        FdpassSystemError: 'function',
        Channel: 'function',
      });
      assert.equal(r.data, 'from cjs');
      assert.equal(r.kind, 'file');
      assert.deepEqual(r.error, { code: 'ENOENT', isSystemError: true });
    });

    it("ESM: named imports (sendFd, recvFd, socketPair, FdpassSystemError) work and are require()'s objects", async () => {
      const child = spawnJson(process.execPath, [path.join(sourceFixtures, 'lifecycle-esm.mjs')]);
      const r = await child.expect<{
        types: Record<string, string>;
        sameAsRequire: boolean;
        namespaceKeys: string[];
        requireKeys: string[];
        data: string;
        kind: string;
        error: Record<string, unknown> | null;
      }>('esm');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.deepEqual(r.types, { sendFd: 'function', recvFd: 'function', socketPair: 'function', FdpassSystemError: 'function' });
      assert.equal(r.sameAsRequire, true, 'one copy of the classes per process');
      // Every CommonJS export is visible as a named ESM export (cjs-module-lexer understood the build).
      assert.deepEqual(r.namespaceKeys, r.requireKeys);
      assert.equal(r.data, 'from esm');
      assert.equal(r.kind, 'file');
      assert.deepEqual(r.error, { isSystemError: true, isCjsClass: true, code: 'ENOENT', syscall: 'connect', name: 'FdpassSystemError' });
    });

    // Strict mode; the consumer then runs.
    it('TypeScript: a consumer type-checks against dist/index.d.ts, and a type error there is caught', async function () {
      this.timeout(60000);
      const tsc = path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
      const consumer = path.join(sourceFixtures, 'lifecycle-types.ts');
      const check = (files: string[]): Fixture => {
        const config = tmpPath(`tsconfig-${Math.random().toString(36).slice(2)}.json`);
        fs.writeFileSync(
          config,
          JSON.stringify({
            extends: path.join(repoRoot, 'tsconfig.json'),
            compilerOptions: {
              noEmit: true,
              rootDir: '/',
              declaration: false,
              declarationMap: false,
              typeRoots: [path.join(repoRoot, 'node_modules', '@types')],
            },
            files,
            include: [],
          }),
        );
        return spawnJson(process.execPath, [tsc, '-p', config, '--listFiles']);
      };

      // The consumer as written: 'fdpass' must resolve through "exports" to dist/index.d.ts.
      const good = check([consumer]);
      const goodLines = (await allLines(good)).map((l) => String(l.text ?? JSON.stringify(l)));
      assert.deepEqual(await good.exited, { code: 0, signal: null }, `tsc:\n${goodLines.filter((l) => !l.startsWith('/')).join('\n')}`);
      assert.ok(goodLines.includes(path.join(repoRoot, 'dist', 'index.d.ts')), 'types come from dist/index.d.ts');
      assert.ok(!goodLines.some((l) => l.startsWith(path.join(repoRoot, 'lib'))), 'not from lib/');

      // The same consumer with one expected error no longer expected: tsc must report it.
      const broken = tmpPath('broken-consumer.ts');
      fs.writeFileSync(
        broken,
        fs
          .readFileSync(consumer, 'utf8')
          .replace("// @ts-expect-error 'raw' is not a SocketKind\n", '')
          .replace("from 'fdpass'", `from '${path.join(repoRoot, 'dist', 'index.js')}'`)
          .replace("from './common'", `from '${path.join(sourceFixtures, 'common')}'`),
      );
      const bad = check([broken]);
      const badLines = (await allLines(bad)).map((l) => String(l.text ?? JSON.stringify(l)));
      const errors = badLines.filter((l) => !l.startsWith('/'));
      assert.notEqual((await bad.exited).code, 0, 'tsc must fail on the broken consumer');
      assert.ok(
        errors.some((l) => l.includes('TS2322') && l.includes('"raw"')),
        `tsc output:\n${errors.join('\n')}`,
      );

      // And the compiled consumer runs.
      const run = runFixture('lifecycle-types');
      const r = await run.expect<Record<string, unknown>>('types');
      assert.deepEqual(await run.exited, { code: 0, signal: null }, run.stderr());
      assert.deepEqual(r, {
        event: 'types',
        pid: true,
        data: 'typed',
        fds: 1,
        kind: 'file',
        received: 'one fd',
        afterClose: 'ERR_FDPASS_CLOSED',
        closedCode: 'ERR_FDPASS_CLOSED',
        max: 253,
      });
    });
  });

  describe('NODE_DEBUG', () => {
    it('NODE_DEBUG=fdpass logs channel open and close as FDPASS lines on stderr; without it, nothing', async () => {
      const env = { ...process.env };
      delete env.NODE_DEBUG;
      const debug = runFixture('lifecycle-child', ['debug'], { env: { ...env, NODE_DEBUG: 'fdpass' } });
      const done = await debug.expect<{ fds: number[] }>('done');
      assert.deepEqual(done.fds, [-1, -1]);
      assert.deepEqual(await debug.exited, { code: 0, signal: null });
      const lines = debug
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('FDPASS '));
      assert.ok(lines.length >= 4, `FDPASS lines:\n${debug.stderr()}`);
      const pid = debug.pid;
      assert.ok(
        lines.every((l) => l.startsWith(`FDPASS ${pid}: `)),
        debug.stderr(),
      );
      // Two channels opened and closed: each says so, naming its descriptor.
      assert.equal(lines.filter((l) => /fd=\d+.*\bopen\b/.test(l)).length, 2, debug.stderr());
      assert.equal(lines.filter((l) => /fd=\d+.*\bclosed\b/.test(l)).length, 2, debug.stderr());

      const quiet = runFixture('lifecycle-child', ['debug'], { env });
      await quiet.expect('done');
      assert.deepEqual(await quiet.exited, { code: 0, signal: null });
      assert.doesNotMatch(quiet.stderr(), /FDPASS/);
    });
  });
});
