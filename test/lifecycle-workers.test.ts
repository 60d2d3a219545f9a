// Lifecycle in Worker threads: normal exit, terminate() mid-poll, process.exit inside a Worker, a
// ChannelServer and hand-offs in Workers, each with the main thread's own channels open throughout.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { socketPair, sendFd, dupFd, closeFd, closeFds, connect, listen, type Channel } from 'fdpass';
import { runFixture, fixturesDir, type Fixture } from './helpers/children';
import { openFds, newFds, settle } from './helpers/fds';
import { get, load } from './helpers/http';
import { leavesSocketFiles, tmpPath } from './helpers/tmp';
import { sleep, waitFor } from './helpers/wait';

const workerFile = path.join(fixturesDir, 'lifecycle-worker.js');

/** Signs of a native crash in a child's stderr. */
const CRASH = /FATAL ERROR|Aborted|Assertion|Segmentation fault|core dumped|Native stack trace/;

interface WorkerMessage {
  event: string;
  [key: string]: unknown;
}

interface StartedWorker {
  worker: Worker;
  /** Next message whose event is `name`; rejects on an 'error' message, a Worker error or exit. */
  expect(name: string, timeoutMs?: number): Promise<WorkerMessage>;
  /** The exit code. */
  exited: Promise<number>;
}

/** Workers still running; a failed test's survivors are terminated so that they cannot hold mocha open. */
const liveWorkers = new Set<Worker>();

function startWorker(workerData: Record<string, unknown>): StartedWorker {
  const worker = new Worker(workerFile, { workerData });
  liveWorkers.add(worker);
  worker.once('exit', () => liveWorkers.delete(worker));
  const queue: WorkerMessage[] = [];
  const waiting: Array<(m: WorkerMessage | Error) => void> = [];
  const deliver = (m: WorkerMessage | Error): void => {
    const w = waiting.shift();
    if (w) w(m);
    else queue.push(m as WorkerMessage);
  };
  worker.on('message', (m: WorkerMessage) => deliver(m));
  worker.on('error', (err) => deliver(err));
  const exited = new Promise<number>((resolve) => {
    worker.once('exit', (code) => {
      for (const w of waiting.splice(0)) w(new Error(`worker exited (code ${code}) before the expected message`));
      resolve(code);
    });
  });
  const next = (timeoutMs: number): Promise<WorkerMessage | Error> => {
    const m = queue.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = waiting.indexOf(got);
        if (i >= 0) waiting.splice(i, 1);
        resolve(new Error(`worker said nothing for ${timeoutMs} ms`));
      }, timeoutMs);
      const got = (v: WorkerMessage | Error): void => {
        clearTimeout(timer);
        resolve(v);
      };
      waiting.push(got);
    });
  };
  return {
    worker,
    exited,
    async expect(name, timeoutMs = 15000) {
      for (;;) {
        const m = await next(timeoutMs);
        if (m instanceof Error) throw m;
        if (m.event === 'error') throw new Error(`worker failed: ${String(m.message)}\n${String(m.stack ?? '')}`);
        if (m.event === name) return m;
      }
    },
  };
}

/** Fails with the descriptors this process gained since `before`. */
async function assertNoNewFds(before: Map<number, string>, what: string): Promise<void> {
  await settle();
  assert.deepEqual(newFds(before, openFds()), [], `${what}: this process holds new descriptors`);
}

interface MainThreadProbe {
  /** Passes an fd across the main thread's own socketPair and through its own ChannelServer. */
  check(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Channels of the main thread kept open while Workers come and go: a Worker's teardown must close
 * what the Worker opened, never a descriptor of the main thread's.
 */
async function mainThreadProbe(): Promise<MainThreadProbe> {
  const [a, b] = socketPair();
  const sock = tmpPath('main-thread.sock');
  const server = await listen(sock);
  let n = 0;
  return {
    async check() {
      const accepted = once(server, 'connection') as Promise<[Channel]>;
      const client = await connect(sock);
      const [conn] = await accepted;
      for (const [from, to] of [
        [a, b],
        [client, conn],
      ] as const) {
        const fd = dupFd(0);
        await from.send({ data: `probe ${n++}`, fds: [fd] });
        closeFd(fd);
        const m = await to.receive({ timeout: 5000 });
        assert.equal(m.fds.length, 1, "the main thread's channel lost its fd");
        closeFds(m.fds);
      }
      await client.close();
      await conn.close();
    },
    async close() {
      await a.close();
      await b.close();
      await server.close();
    },
  };
}

/**
 * A test body run with a {@link mainThreadProbe} open throughout (closed at the end, whatever the
 * outcome); `before` is the process's descriptors once the probe is open. Afterwards the probe must
 * still work and no descriptor may be left beyond `before`.
 */
function probed(body: (probe: MainThreadProbe, before: Map<number, string>) => Promise<void>): () => Promise<void> {
  return async () => {
    const probe = await mainThreadProbe();
    try {
      const before = openFds();
      await body(probe, before);
      // The main thread's channels still work, and this process holds nothing new.
      await probe.check();
      await assertNoNewFds(before, 'after the Workers ended');
    } finally {
      await probe.close();
    }
  };
}

describe('lifecycle: Worker threads', () => {
  before(async () => {
    // The first Worker opens descriptors that Node then keeps for later Workers: open them before
    // the root hooks take their per-test baseline.
    const w = startWorker({ mode: 'roundtrip', file: __filename });
    await w.expect('done');
    await w.exited;
    await settle();
  });

  afterEach(async () => {
    await Promise.all([...liveWorkers].map((w) => w.terminate()));
  });

  for (const type of ['seqpacket', 'stream', 'dgram'] as const) {
    it(`${type}: a Worker passes an fd there and back over a socketPair, closes, and exits with code 0`, async () => {
      const before = openFds();
      const file = tmpPath('payload.txt');
      fs.writeFileSync(file, `worker payload ${type}`);
      const w = startWorker({ mode: 'roundtrip', type, file });
      const done = await w.expect('done');
      assert.equal(done.there, 'there');
      assert.equal(done.back, 'back');
      assert.equal(done.thereKind, 'file');
      assert.equal(done.backKind, 'file');
      assert.equal(done.backFds, 1);
      assert.equal(done.content, `worker payload ${type}`);
      // Exit on its own: nothing it opened may keep its loop alive.
      assert.equal(await w.exited, 0);
      await assertNoNewFds(before, 'after the Worker exited');
    });
  }

  // The fd number goes in workerData.
  it('a Worker adopts a socketPair end by fd number and exchanges fds with the main thread', async () => {
    const before = openFds();
    const [mine, forWorker] = socketPair();
    // The Worker's channel takes ownership of its own descriptor: hand it a duplicate, close ours.
    const fd = dupFd(forWorker.fd);
    await forWorker.close();
    const workerFileOut = tmpPath('from-worker.txt');
    fs.writeFileSync(workerFileOut, 'written by the test, sent by the worker');
    const w = startWorker({ mode: 'adopt', fd, file: workerFileOut });
    const adopted = await w.expect('adopted');
    assert.equal(adopted.fd, fd);
    assert.equal(adopted.type, 'seqpacket');

    const payload = tmpPath('from-main.txt');
    fs.writeFileSync(payload, 'main payload');
    const file = fs.openSync(payload, 'r');
    await sendFd(mine, file, 'from main');
    fs.closeSync(file);
    const back = await mine.receive();
    assert.equal(back.data.toString(), 'from worker');
    assert.equal(back.fds.length, 1);
    assert.equal(fs.readFileSync(back.fds[0]!, 'utf8'), 'written by the test, sent by the worker');
    for (const f of back.fds) closeFd(f);

    const done = await w.expect('done');
    assert.equal(done.data, 'from main');
    assert.equal(done.fds, 1);
    assert.equal(done.content, 'main payload');
    assert.equal(await w.exited, 0);
    // The worker closed its channel: our end sees the end of the conversation.
    await assert.rejects(mine.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
    await mine.close();
    await assertNoNewFds(before, 'after the adopting Worker exited');
  });

  for (const end of ['return', 'exit', 'terminate'] as const) {
    const how = { return: 'returns', exit: 'calls process.exit(0)', terminate: 'is terminated' }[end];
    // All 5 were read into JS. 'returns': its event loop runs dry.
    it(`a Worker that took 1 of 5 fd-carrying messages and ${how}: the other 4 are closed`, async () => {
      const before = openFds();
      const [mine, forWorker] = socketPair();
      const fd = dupFd(forWorker.fd);
      await forWorker.close();
      const file = tmpPath('payload.txt');
      fs.writeFileSync(file, 'one of five');
      const payload = fs.openSync(file, 'r');
      for (let i = 0; i < 5; i++) await mine.send({ data: `m${i}`, fds: [payload] });
      fs.closeSync(payload);
      const w = startWorker({ mode: 'take-one', fd, end });
      const took = await w.expect('took');
      assert.deepEqual([took.data, took.fds], ['m0', 1]);
      if (end === 'terminate') assert.equal(await w.worker.terminate(), 1);
      assert.equal(await w.exited, end === 'terminate' ? 1 : 0);
      await settle();
      const leaked = newFds(before, openFds()).filter((l) => l.endsWith(file));
      assert.deepEqual(leaked, [], `the fds of the 4 messages the Worker never took are still open`);
      // The Worker's end of the pair closed with it.
      await assert.rejects(mine.receive({ timeout: 5000 }), { code: 'ERR_FDPASS_CLOSED' });
      await mine.close();
      await assertNoNewFds(before, 'after the Worker ended');
    });
  }

  // receive() pending, sends queued on EAGAIN, a server listening.
  it('terminate() while channels poll, 20 in sequence and 20 at once: fds back to baseline', async function () {
    leavesSocketFiles(
      /^(par|seq)-\d+\.sock$/,
      "a terminated Worker's ChannelServer keeps its path (its poller is closed by the env cleanup hook, which does not know the path)",
    );
    this.timeout(60000);
    const before = openFds();
    const runOne = async (name: string): Promise<void> => {
      const w = startWorker({ mode: 'idle', sock: tmpPath(name) });
      const ready = await w.expect('ready');
      assert.ok((ready.queued as number) > 0, `sends were queued in the worker (${String(ready.queued)})`);
      // terminate() resolves with the exit code: 1 for a terminated Worker.
      assert.equal(await w.worker.terminate(), 1);
      assert.equal(await w.exited, 1);
    };
    for (let i = 0; i < 20; i++) await runOne(`seq-${i}.sock`);
    await assertNoNewFds(before, 'after 20 terminated Workers in sequence');
    await Promise.all(Array.from({ length: 20 }, (_, i) => runOne(`par-${i}.sock`)));
    await assertNoNewFds(before, 'after 20 terminated Workers at once');
  });

  it('process.exit(0) in a Worker with channels polling and sends queued: exit 0, fds back to baseline', async function () {
    leavesSocketFiles(
      /^exit-\d+\.sock$/,
      "process.exit() in a Worker skips close(): its server's path stays, as a net.Server's does at exit",
    );
    this.timeout(60000);
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      const w = startWorker({ mode: 'idle-exit', sock: tmpPath(`exit-${i}.sock`) });
      const ready = await w.expect('ready');
      assert.ok((ready.queued as number) > 0);
      assert.equal(await w.exited, 0);
    }
    await assertNoNewFds(before, 'after 20 Workers called process.exit(0)');
  });

  describe("core scenarios inside a Worker, with the main thread's own channels open throughout", () => {
    for (const type of ['stream', 'seqpacket'] as const) {
      // The client hangs up, the server closes, the Worker exits.
      it(
        `${type}: a ChannelServer in a Worker echoes 30 fd-carrying messages, then the Worker exits 0`,
        probed(async () => {
          const sock = tmpPath('echo.sock');
          const w = startWorker({ mode: 'echo-server', type, sock, end: 'return' });
          await w.expect('listening');
          const client = await connect(sock, { type });
          const file = tmpPath('payload.txt');
          fs.writeFileSync(file, 'echoed');
          const fd = fs.openSync(file, 'r');
          for (let i = 0; i < 30; i++) {
            await client.send({ data: `m${i}`, fds: [fd] });
            const back = await client.receive({ timeout: 5000 });
            assert.equal(back.data.toString(), `m${i}`);
            assert.equal(back.fds.length, 1);
            assert.equal(fs.readlinkSync(`/proc/self/fd/${back.fds[0]!}`), file);
            closeFds(back.fds);
          }
          fs.closeSync(fd);
          await client.close();
          assert.equal(await w.exited, 0);
        }),
      );
    }

    // 10 times. The client sees the channel end; fds in flight, queued, or read but not handed out are closed; only those its handler
    // held stay; the main thread's channels work.
    it(
      'terminate() mid-traffic of a ChannelServer in a Worker closes every fd fdpass held',
      probed(async (probe, before) => {
        leavesSocketFiles(
          /^echo-\d+\.sock$/,
          "a terminated Worker's server keeps its path (its poller is closed by the env cleanup hook, which does not know the path)",
        );
        const file = tmpPath('payload.txt');
        fs.writeFileSync(file, 'in flight');
        for (let round = 0; round < 10; round++) {
          const sock = tmpPath(`echo-${round}.sock`);
          const held = new Int32Array(new SharedArrayBuffer(4)).fill(-1);
          const w = startWorker({ mode: 'echo-server', sock, held: held.buffer });
          await w.expect('listening');
          const client = await connect(sock);
          const fd = fs.openSync(file, 'r');
          let echoed = 0;
          let terminated: Promise<number> | undefined;
          const ended = await (async () => {
            for (;;) {
              // Several messages in flight each time, so the Worker dies holding some of them.
              const sends = Array.from({ length: 4 }, (_, i) => client.send({ data: `m${echoed}.${i}`, fds: [fd] }));
              try {
                await Promise.all(sends);
                for (let i = 0; i < 4; i++) {
                  const back = await client.receive({ timeout: 5000 });
                  closeFds(back.fds);
                  echoed++;
                }
              } catch (err) {
                await Promise.allSettled(sends);
                return err as Error & { code?: string };
              }
              if (echoed >= 20 + round && terminated === undefined) terminated = w.worker.terminate();
            }
          })();
          assert.ok(
            ['ERR_FDPASS_CLOSED', 'EPIPE', 'ECONNRESET'].includes(ended.code ?? ''),
            `the client saw ${ended.code}: ${ended.message}`,
          );
          assert.equal(await terminated, 1);
          fs.closeSync(fd);
          await client.close();
          await settle();
          // A message handed to the Worker's 'message' handler is the application's: if terminate()
          // lands before the handler closed its fd, that fd stays open, as any fd number a terminated
          // Worker held. Everything fdpass still held (in flight, queued duplicates, read but not
          // handed out) must be closed: only the fd the handler said it holds may stay.
          const heldByHandler = Atomics.load(held, 0);
          const left = [...openFds()].filter(([n, target]) => target === file && before.get(n) !== file).map(([n]) => n);
          assert.deepEqual(
            left.filter((n) => n !== heldByHandler),
            [],
            `fds of ${file} open after terminate() that the handler did not hold (it held ${heldByHandler})`,
          );
          if (left.includes(heldByHandler)) closeFd(heldByHandler); // the terminated application's, not fdpass's
          await probe.check();
        }
      }),
    );

    it(
      'handoff.serve() in a Worker, take() in a child: the listener moves, the Worker exits 0',
      probed(async () => {
        const sock = tmpPath('control.sock');
        const w = startWorker({ mode: 'handoff-serve', sock });
        const port = (await w.expect('serving')).port as number;
        assert.match(await get(port), /^serve \d+$/);
        const taker = runFixture('handoff-new', [sock, 'serve']);
        await taker.expect('adopted');
        taker.send({ cmd: 'ready' });
        assert.deepEqual(await taker.expect('ready'), { event: 'ready', acknowledged: true });
        assert.equal((await w.expect('handoff')).pid, taker.pid);
        assert.equal((await w.expect('drained')).listening, false);
        assert.equal(await w.exited, 0);
        assert.equal(await get(port), `new ${taker.pid}`);
        taker.send({ cmd: 'exit' });
        assert.equal((await taker.exited).code, 0);
      }),
    );

    // After GET /last the Worker closes.
    it(
      'take() in a Worker from a child under load: 0 failed requests; the Worker then exits 0',
      probed(async () => {
        const sock = tmpPath('control.sock');
        const old = runFixture('handoff-old', [sock, 'http']);
        const { ports } = await old.expect<{ ports: { web: number } }>('serving');
        const traffic = load(ports.web, { workers: 3, keepAlive: false });
        const w = startWorker({ mode: 'handoff-take', sock, end: 'return' });
        assert.equal((await w.expect('serving')).acknowledged, true);
        await old.expect('drained');
        assert.equal((await old.exited).code, 0);
        await sleep(200); // the Worker alone serves for a while
        const r = await traffic.stop();
        assert.deepEqual(r.errors.slice(0, 5), [], `${r.errors.length} failed requests`);
        assert.ok(
          [...r.bodies.keys()].some((b) => /^take \d+$/.test(b)),
          'the Worker served',
        );
        assert.match(await get(ports.web, '/last'), /^take \d+$/);
        assert.equal(await w.exited, 0);
      }),
    );

    // Both Workers then end by themselves.
    it(
      'Worker to Worker under load: serve() in one, take() in the other, 0 failed requests',
      probed(async () => {
        const sock = tmpPath('control.sock');
        const a = startWorker({ mode: 'handoff-serve', sock });
        const port = (await a.expect('serving')).port as number;
        const traffic = load(port, { workers: 3, keepAlive: false });
        await sleep(100);
        const b = startWorker({ mode: 'handoff-take', sock, end: 'return' });
        assert.equal((await b.expect('serving')).acknowledged, true);
        await a.expect('drained');
        assert.equal(await a.exited, 0);
        await sleep(200);
        const r = await traffic.stop();
        assert.deepEqual(r.errors.slice(0, 5), [], `${r.errors.length} failed requests`);
        const served = [...r.bodies.keys()].map((body) => body.split(' ')[0]).sort();
        assert.deepEqual([...new Set(served)], ['serve', 'take'], 'both Workers served');
        assert.match(await get(port, '/last'), /^take \d+$/);
        assert.equal(await b.exited, 0);
      }),
    );

    // One Worker serves a hand-off, the other took the listener.
    it(
      "terminate() under load of a serving or a taking Worker: fds back, the main thread's channels work",
      probed(async (probe) => {
        leavesSocketFiles(
          /^handoff-serve\.sock$/,
          "a terminated Worker's server keeps its path (its poller is closed by the env cleanup hook, which does not know the path)",
        );
        for (const role of ['handoff-serve', 'handoff-take'] as const) {
          const sock = tmpPath(`${role}.sock`);
          let port: number;
          let old: Fixture | undefined;
          if (role === 'handoff-take') {
            old = runFixture('handoff-old', [sock, 'http']);
            port = (await old.expect<{ ports: { web: number } }>('serving')).ports.web;
          }
          const w = startWorker({ mode: role, sock });
          const serving = await w.expect('serving');
          port ??= serving.port as number;
          const traffic = load(port!, { workers: 3, keepAlive: true });
          // Terminated while requests flow: once the first is answered (not after a fixed 150 ms, which
          // an ASan build's Worker did not always make).
          await waitFor(`${role}: a request answered under load`, () => traffic.served() > 0, 15_000);
          await sleep(50);
          assert.equal(await w.worker.terminate(), 1);
          const r = await traffic.stop();
          assert.ok(r.ok > 0, `${role}: no request was served before terminate()`);
          if (old !== undefined) {
            await old.expect('drained');
            assert.equal((await old.exited).code, 0);
          }
          await probe.check();
        }
      }),
    );
  });

  // These two run the Workers in a child process: if a Worker's teardown aborts, the whole process
  // goes down, and that must be this test's failure rather than the end of the test run.
  for (const [mode, what] of [
    ['busy', 'terminate() while poll callbacks fire'],
    ['busy-exit', "process.exit(0) from a Worker's poll callback"],
    ['unref-pending', "a Worker ending with an unref()'d channel's fd message unread"],
  ] as const) {
    // Each 20 Workers in sequence, then 20 at once; 'busy' and 'busy-exit' under a ping-pong between two
    // channels. Every Worker must end.
    it(`${what}: no abort, host fds back to baseline`, async function () {
      this.timeout(90000);
      leavesSocketFiles(
        /^(seq|par)-\d+\.sock$/,
        "a terminated (or process.exit()ing) Worker's server keeps its path, as a net.Server's stays at exit",
      );
      const dir = path.dirname(tmpPath('x'));
      const host = runFixture('lifecycle-worker-host', [mode, '20', dir]);
      const done = host.expect<{
        outcomes: Array<{ code: number; queued: number; error?: string }>;
        before: number;
        after: number;
        targetsBefore: Record<string, string>;
        targetsAfter: Record<string, string>;
      }>('done', 80000);
      done.catch(() => {}); // judged after the exit status, which says more
      const exit = await host.exited;
      assert.doesNotMatch(host.stderr(), CRASH, `the Worker host crashed:\n${host.stderr()}`);
      assert.deepEqual(exit, { code: 0, signal: null }, `host stderr:\n${host.stderr()}`);
      const r = await done;
      assert.equal(r.outcomes.length, 40);
      const expectedCode = mode === 'busy' ? 1 : 0;
      for (const o of r.outcomes) {
        assert.equal(o.error, undefined, `a Worker failed: ${o.error}`);
        assert.equal(o.code, expectedCode);
        if (mode !== 'unref-pending') assert.ok(o.queued > 0, 'each Worker had sends queued');
      }
      // Descriptors the Workers' channels held (sockets, queued duplicates, fds read but never
      // handed to JavaScript) are closed by the time each Worker has exited.
      assert.deepEqual(r.targetsAfter, r.targetsBefore);
      assert.equal(r.after, r.before);
    });
  }
});
