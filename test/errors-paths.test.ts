// Bad socket paths and options: too long, missing directories, stale and live socket files, abstract
// names, a socket file's mode from its creation on; options refused before any socket exists; the
// path forms of sendFd/sendFds. Each a clear, Node-shaped error, no file or descriptor left behind.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import {
  bindDgram,
  Channel,
  type ChannelServer,
  closeFd,
  connect,
  FdpassSystemError,
  listen,
  recvFd,
  recvFds,
  sendFd,
  sendFds,
  socketPair,
} from 'fdpass';
import { type AnyError, assertArgError, assertSystemError, bad, failure } from './helpers/errors';
import { newFds, openFds, settle } from './helpers/fds';
import { nextConnection } from './helpers/sockets';
import { dirEntries, tmpPath } from './helpers/tmp';

// A worker thread's body: lstat() each of workerData.paths in a tight loop until workerData.stop[0]
// is set, then post the permission bits seen per path ({ path: { '600': count } }).
const WATCH_MODES = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { paths, stop, seen } = workerData;
const modes = {};
while (Atomics.load(stop, 0) === 0) {
  for (const [i, p] of paths.entries()) {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (st === undefined) continue;
    Atomics.add(seen, i, 1);
    const bits = (st.mode & 0o7777).toString(8);
    modes[p] ??= {};
    modes[p][bits] = (modes[p][bits] ?? 0) + 1;
  }
}
parentPort.postMessage(modes);
`;

/** A socket file whose owner (a python3 child) bound it and exited without unlinking it. */
function makeStaleSocket(p: string, type: 'SOCK_STREAM' | 'SOCK_SEQPACKET' | 'SOCK_DGRAM'): void {
  execFileSync('python3', ['-c', `import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.${type})\ns.bind(sys.argv[1])`, p]);
  assert.ok(fs.lstatSync(p).isSocket(), 'python left a socket file behind');
}

/** A server that hands every accepted channel to `accepted` (so the test can close them). */
async function listenCollecting(
  p: string,
  opts: Parameters<typeof listen>[1] = {},
): Promise<{ server: ChannelServer; accepted: Channel[]; closeAll(): Promise<void> }> {
  const server = await listen(p, opts);
  const accepted: Channel[] = [];
  server.on('connection', (c: Channel) => accepted.push(c));
  return {
    server,
    accepted,
    async closeAll() {
      await server.close();
      for (const c of accepted) await c.close();
    },
  };
}

/**
 * The first message any accepted channel delivers. A failed listen() on a live path probes it with a
 * connect(2) (to tell a stale file from a live one), so the live server also accepts "phantom" peers
 * that hang up at once: those are skipped and counted.
 */
async function firstMessage(coll: { server: ChannelServer; accepted: Channel[] }): Promise<{ data: string; phantoms: number }> {
  let phantoms = 0;
  for (let i = 0; ; i++) {
    while (coll.accepted.length <= i) await nextConnection(coll.server);
    try {
      const m = await coll.accepted[i]!.receive({ timeout: 5000 });
      return { data: m.data.toString(), phantoms };
    } catch (err) {
      if ((err as AnyError).code !== 'ERR_FDPASS_CLOSED') throw err;
      phantoms++;
    }
  }
}

describe('errors: socket paths and options', () => {
  describe('socket paths', () => {
    it('connect to a missing path is ENOENT with the path on the error and in the message', async () => {
      const p = tmpPath('missing.sock');
      const err = await failure(() => connect(p));
      assertSystemError(err, 'ENOENT', 'connect');
      assert.equal(err.path, p);
      assert.ok(Object.keys(err).includes('path'), 'path is an own enumerable property');
      assert.equal(err.message, `connect ENOENT: no such file or directory '${p}'`);
      // The path forms of sendFd/sendFds connect too.
      const err2 = await failure(() => sendFd(p, 0, 'x'));
      assertSystemError(err2, 'ENOENT', 'connect');
      assert.equal(err2.path, p);
      // A missing directory, for listen, names bind and the path.
      const deep = tmpPath('no-such-dir/x.sock');
      const err3 = await failure(() => listen(deep));
      assertSystemError(err3, 'ENOENT', 'bind');
      assert.equal(err3.path, deep);
      const err4 = await failure(() => bindDgram(deep));
      assertSystemError(err4, 'ENOENT', 'bind');
      assert.equal(err4.path, deep);
    });

    it('connect to a missing abstract name is ECONNREFUSED naming it as @name', async () => {
      const name = `@fdpass-test-missing-${process.pid}-${Math.random().toString(36).slice(2)}`;
      const err = await failure(() => connect(name));
      assertSystemError(err, 'ECONNREFUSED', 'connect');
      assert.equal(err.path, name);
      assert.ok(err.message.endsWith(`'${name}'`), err.message);
    });

    it("connect to a path that is not a socket (a regular file, a directory) is the kernel's ECONNREFUSED", async () => {
      const file = tmpPath('regular.txt');
      fs.writeFileSync(file, 'not a socket');
      for (const type of ['seqpacket', 'stream', 'dgram'] as const) {
        const err = await failure(() => connect(file, { type }), `connect(file, ${type})`);
        // Linux answers connect(2) to a non-socket inode with ECONNREFUSED (unix_find_other: not S_ISSOCK).
        assertSystemError(err, 'ECONNREFUSED', 'connect', type);
        assert.equal(err.path, file);
        assert.match(err.message, /connection refused/);
      }
      const dir = tmpPath('a-directory');
      fs.mkdirSync(dir);
      const err = await failure(() => connect(dir));
      assertSystemError(err, 'ECONNREFUSED', 'connect');
      assert.equal(err.path, dir);
      assert.equal(fs.readFileSync(file, 'utf8'), 'not a socket');
    });

    it('listen where a regular file (or a directory) exists is EADDRINUSE and leaves it alone', async () => {
      const file = tmpPath('precious.txt');
      fs.writeFileSync(file, 'keep me');
      const ino = fs.statSync(file).ino;
      for (const type of ['seqpacket', 'stream'] as const) {
        const err = await failure(() => listen(file, { type }), `listen(file, ${type})`);
        assertSystemError(err, 'EADDRINUSE', 'bind', type);
        assert.equal(err.path, file);
        assert.equal(err.message, `bind EADDRINUSE: address already in use '${file}'`);
      }
      const err = await failure(() => bindDgram(file));
      assertSystemError(err, 'EADDRINUSE', 'bind');
      assert.equal(fs.readFileSync(file, 'utf8'), 'keep me', 'the file is intact');
      assert.equal(fs.statSync(file).ino, ino, 'the same file');
      const dir = tmpPath('a-directory');
      fs.mkdirSync(dir);
      const err2 = await failure(() => listen(dir));
      assertSystemError(err2, 'EADDRINUSE', 'bind');
      assert.ok(fs.statSync(dir).isDirectory());
    });

    it('listen twice on one path is EADDRINUSE; the first keeps its file and its clients', async () => {
      const p = tmpPath('busy.sock');
      for (const type of ['seqpacket', 'stream'] as const) {
        const first = await listenCollecting(p, { type });
        const ino = fs.statSync(p).ino;
        const err = await failure(() => listen(p, { type }), `second listen (${type})`);
        assertSystemError(err, 'EADDRINUSE', 'bind', type);
        assert.equal(err.path, p);
        // Nor does recvFd's listener. (Another socket type: see the EPROTOTYPE test below.)
        assertSystemError(await failure(() => recvFd(p, { type })), 'EADDRINUSE', 'bind');
        assert.equal(fs.statSync(p).ino, ino, 'the socket file was not replaced');
        const client = await connect(p, { type });
        await client.send({ data: 'hello' });
        const got = await firstMessage(first);
        assert.equal(got.data, 'hello');
        await client.close();
        await first.closeAll();
        assert.ok(!fs.existsSync(p), 'closing the first server removes its file');
      }
    });

    it('a live socket of another type keeps its path: listen/bindDgram fail with EADDRINUSE', async () => {
      const kinds = ['seqpacket', 'stream', 'dgram'] as const;
      const codes: Record<string, string> = {};
      for (const holder of kinds) {
        for (const taker of kinds) {
          if (holder === taker) continue;
          const p = tmpPath(`${holder}-held-${taker}.sock`);
          const held = holder === 'dgram' ? await bindDgram(p) : await listenCollecting(p, { type: holder });
          const ino = fs.statSync(p).ino;
          const err = await failure(() => (taker === 'dgram' ? bindDgram(p) : listen(p, { type: taker })), `${taker} on ${holder}`);
          codes[`${taker} on a live ${holder}`] = `${err.syscall as string} ${err.code as string}`;
          assert.ok(err instanceof FdpassSystemError);
          assert.equal(err.path, p);
          assert.equal(fs.statSync(p).ino, ino, `${taker} on ${holder}: the live socket's file was not replaced`);
          // The holder still owns the name.
          if (held instanceof Channel) {
            await sendFds(p, [], 'still mine', { type: 'dgram' });
            assert.equal((await held.receive({ timeout: 5000 })).data.toString(), 'still mine');
            await held.close();
          } else {
            const accepted = nextConnection(held.server);
            const client = await connect(p, { type: holder });
            await accepted;
            await client.close();
            await held.closeAll();
          }
          assert.ok(!fs.existsSync(p));
        }
      }
      const expected = Object.fromEntries(Object.keys(codes).map((k) => [k, 'bind EADDRINUSE']));
      // Regression: UnixListen once returned the stale-socket probe's errno (EPROTOTYPE) instead of bind's.
      assert.deepEqual(codes, expected);
    });

    it('a stale socket file (its owner exited without unlinking) is replaced by listen and bindDgram', async () => {
      for (const [kind, pyType] of [
        ['seqpacket', 'SOCK_SEQPACKET'],
        ['stream', 'SOCK_STREAM'],
        ['stream', 'SOCK_SEQPACKET'],
      ] as const) {
        const p = tmpPath(`stale-${kind}-${pyType}.sock`);
        makeStaleSocket(p, pyType);
        // (No inode check: the file system may hand the freed inode number to the new file.)
        const server = await listenCollecting(p, { type: kind });
        const accepted = nextConnection(server.server);
        const client = await connect(p, { type: kind });
        const peer = await accepted;
        await client.send({ data: 'fresh' });
        assert.equal((await peer.receive()).data.toString(), 'fresh');
        await client.close();
        await server.closeAll();
        assert.ok(!fs.existsSync(p), `${kind}: removed on close`);
      }
      const p = tmpPath('stale-dgram.sock');
      makeStaleSocket(p, 'SOCK_DGRAM');
      const receiver = await bindDgram(p);
      await sendFds(p, [], 'to the new one', { type: 'dgram' });
      assert.equal((await receiver.receive({ timeout: 5000 })).data.toString(), 'to the new one');
      await receiver.close();
      assert.ok(!fs.existsSync(p));
    });

    // Under umask 0, a thread stats the file throughout the bind.
    it('a socket file is never wider than options.mode, even right after bind(2)', async () => {
      // A datagram socket takes datagrams from the moment bind(2) creates its file (no listen(2)):
      // a file created wider than `mode` and narrowed afterwards let any user send in between.
      // Under umask 0 such a file is created 0777; the thread sees it in that window hundreds of times.
      const kinds = ['dgram', 'stream', 'seqpacket'] as const;
      const paths = kinds.map((k) => tmpPath(`watched-${k}.sock`));
      const stop = new Int32Array(new SharedArrayBuffer(4));
      const seen = new Int32Array(new SharedArrayBuffer(4 * paths.length));
      const watcher = new Worker(WATCH_MODES, { eval: true, workerData: { paths, stop, seen } });
      const report = once(watcher, 'message') as Promise<[Record<string, Record<string, number>>]>;
      const exited = once(watcher, 'exit');
      await once(watcher, 'online');
      const umask = process.umask(0);
      try {
        for (const [i, kind] of kinds.entries()) {
          // 300 binds, and more until the thread has seen the file: on a loaded machine it may not
          // have been scheduled during the first 300 (bounded: the assertion below then fails).
          for (let n = 0; n < 300 || (Atomics.load(seen, i) === 0 && n < 20_000); n++) {
            const s = kind === 'dgram' ? await bindDgram(paths[i]!, { mode: 0o600 }) : await listen(paths[i]!, { type: kind, mode: 0o600 });
            await s.close();
          }
        }
      } finally {
        process.umask(umask);
        Atomics.store(stop, 0, 1);
      }
      const [modes] = await report;
      await exited;
      for (const p of paths) assert.ok(modes[p] !== undefined, `the thread saw ${path.basename(p)} at least once`);
      assert.deepEqual(
        paths.map((p) => Object.keys(modes[p]!)),
        paths.map(() => ['600']),
        `modes seen (mode: count): ${JSON.stringify(modes)}`,
      );
      assert.deepEqual(dirEntries(), []);
    });

    it('names longer than 107 bytes are ERR_INVALID_ARG_VALUE; 107 bytes work (paths and abstract names)', async () => {
      const dir = path.dirname(tmpPath('x'));
      const room = 107 - Buffer.byteLength(`${dir}/`);
      assert.ok(room > 10, `the temp dir ${dir} leaves room for a name`);
      const exact = path.join(dir, 'n'.repeat(room));
      assert.equal(Buffer.byteLength(exact), 107);
      const tooLong = `${exact}x`;
      // Fewer than 107 characters but more than 107 bytes: the limit is in bytes.
      const multibyte = path.join(dir, 'é'.repeat(Math.ceil(room / 2) + 1));
      assert.ok(multibyte.length <= 107 && Buffer.byteLength(multibyte) > 107);
      const abstractOk = `@fdpass-${process.pid}-${Math.random().toString(36).slice(2)}-`.padEnd(108, 'a');
      assert.equal(Buffer.byteLength(abstractOk) - 1, 107);
      const abstractLong = `${abstractOk}a`;
      for (const name of [tooLong, multibyte, abstractLong, `\0${abstractLong.slice(1)}`]) {
        const calls: Array<[string, () => unknown]> = [
          ['connect', () => connect(name)],
          ['listen', () => listen(name)],
          ['bindDgram', () => bindDgram(name)],
          ['sendFd', () => sendFd(name, 0, 'x')],
          ['recvFd', () => recvFd(name)],
        ];
        for (const [what, call] of calls) {
          const err = await failure(call, `${what}(${Buffer.byteLength(name)} bytes)`);
          assertArgError(
            err,
            TypeError,
            'ERR_INVALID_ARG_VALUE',
            /^The argument 'path' is longer than 107 bytes, the limit of a Unix socket name\./,
            what,
          );
        }
      }
      assert.deepEqual(dirEntries(), []);
      for (const name of [exact, abstractOk]) {
        const server = await listenCollecting(name);
        const accepted = nextConnection(server.server);
        const client = await connect(name);
        const peer = await accepted;
        await client.send({ data: 'fits' });
        assert.equal((await peer.receive()).data.toString(), 'fits');
        await client.close();
        await server.closeAll();
      }
      assert.deepEqual(dirEntries(), []);
    });
  });

  describe('options checked before any socket exists', () => {
    it('connect(path, { maxMessageSize: 0 }) is ERR_OUT_OF_RANGE naming the option, and leaks nothing', async () => {
      const p = tmpPath('mms.sock');
      const server = await listenCollecting(p);
      const before = openFds();
      const err = await failure(() => connect(p, { maxMessageSize: 0 }));
      await new Promise((r) => setTimeout(r, 20));
      await server.closeAll(); // closes the server side of a connection, had one been made
      await settle();
      const leaked = newFds(before, openFds());
      // Close what leaked ourselves, so that the root hook's leak check does not abort the whole run.
      for (const l of leaked) fs.closeSync(Number(l.split(' ')[0]));
      assert.equal(server.accepted.length, 0, 'no connection was made');
      assert.deepEqual(
        { name: err.name, code: err.code, namesOption: /"options\.maxMessageSize"/.test(err.message), leaked },
        { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', namesOption: true, leaked: [] },
        err.message,
      );
    });

    it('maxMessageSize is checked by listen, bindDgram, socketPair, recvFd(path) up front', async () => {
      const p = tmpPath('mms-listen.sock');
      for (const v of [0, -1, 1.5, NaN, 2 ** 40]) {
        const calls: Array<[string, () => unknown]> = [
          ['listen', () => listen(p, { maxMessageSize: v })],
          ['bindDgram', () => bindDgram(p, { maxMessageSize: v })],
          ['socketPair', () => socketPair({ maxMessageSize: v })],
          ['recvFd(path)', () => recvFd(p, { maxMessageSize: v })],
          ['connect', () => connect(p, { maxMessageSize: v })],
        ];
        for (const [what, call] of calls) {
          const err = await failure(call, `${what}(${v})`);
          assertArgError(err, RangeError, 'ERR_OUT_OF_RANGE', /^The value of "options\.maxMessageSize" is out of range\./, `${what}(${v})`);
        }
      }
      const err = await failure(() => socketPair({ maxMessageSize: bad('64k') }));
      assertArgError(err, TypeError, 'ERR_INVALID_ARG_TYPE', /"options\.maxMessageSize"/);
      assert.deepEqual(dirEntries(), [], 'nothing was bound');
    });

    it('recvFd(path, opts) checks timeout, signal and the options object before it listens', async () => {
      const p = tmpPath('opts.sock');
      const cases: Array<[string, unknown, typeof TypeError | typeof RangeError, string, RegExp]> = [
        ['{ timeout: -1 }', { timeout: -1 }, RangeError, 'ERR_OUT_OF_RANGE', /"options\.timeout"/],
        ['{ timeout: 1.5 }', { timeout: 1.5 }, RangeError, 'ERR_OUT_OF_RANGE', /"options\.timeout"/],
        ["{ timeout: 'x' }", { timeout: 'x' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"options\.timeout"/],
        [
          "{ signal: 'x' }",
          { signal: 'x' },
          TypeError,
          'ERR_INVALID_ARG_TYPE',
          /"options\.signal" argument must be an instance of AbortSignal/,
        ],
        ['null', null, TypeError, 'ERR_INVALID_ARG_TYPE', /"options" argument must be of type object\. Received null/],
        ["'x'", 'x', TypeError, 'ERR_INVALID_ARG_TYPE', /"options" argument must be of type object/],
        ["{ mode: 'rw' }", { mode: 'rw' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"options\.mode"/],
        ['{ allow: 1 }', { allow: 1 }, TypeError, 'ERR_INVALID_ARG_TYPE', /"options\.allow"/],
      ];
      for (const [what, opts, cls, code, message] of cases) {
        for (const fn of [recvFd, recvFds]) {
          // Answered at once: a bad option must not turn into a wait for a connection.
          const pending = failure(() => fn(p, bad(opts)), `${fn.name}(path, ${what})`);
          const err = await Promise.race([
            pending,
            new Promise<never>((_r, reject) =>
              setTimeout(() => reject(new Error(`${fn.name}(path, ${what}) is still waiting`)), 1000).unref(),
            ),
          ]);
          assertArgError(err, cls, code, message, `${fn.name}(path, ${what})`);
          assert.deepEqual(dirEntries(), [], `${fn.name}(path, ${what}) did not listen`);
        }
      }
    });
  });

  describe('the path forms of sendFd/sendFds', () => {
    it('sendFd(path, fd, badData) is ERR_INVALID_ARG_TYPE before connecting: the receiver sees no connection', async () => {
      const codeOf = async (fn: () => unknown): Promise<string> => String((await failure(fn)).code);
      const noListener = await codeOf(() => sendFd(tmpPath('nobody.sock'), 0, bad(42)));
      const p = tmpPath('listener.sock');
      const received = recvFd(p, { timeout: 300 }).then(
        async (r) => {
          closeFd(r.fd);
          return 'a descriptor';
        },
        (e: AnyError) => String(e.code),
      );
      const withListener = await codeOf(() => sendFds(p, [0], bad({ not: 'data' })));
      const receiver = await received;
      // Regression: sendFds(path, ...) once connected before checking `data`, so a bad payload cost a
      // connection the receiver saw close empty (and without a listener the error was ENOENT).
      assert.deepEqual(
        { noListener, withListener, receiver },
        { noListener: 'ERR_INVALID_ARG_TYPE', withListener: 'ERR_INVALID_ARG_TYPE', receiver: 'ERR_FDPASS_TIMEOUT' },
      );
    });

    it('sendFds(target, [0, 1.5]) names the bad element, as channel.send does ("message.fds[1]")', async () => {
      const [a, b] = socketPair();
      const err = await failure(() => sendFds(a, [0, 1.5]));
      assertArgError(err, RangeError, 'ERR_OUT_OF_RANGE', /^The value of "fds\[1\]" is out of range\./);
      const err2 = await failure(() => sendFds(a, [0, 1, bad('2')]));
      assertArgError(
        err2,
        TypeError,
        'ERR_INVALID_ARG_TYPE',
        /^The "fds\[2\]" argument must be of type number or an instance of net\.Server/,
      );
      // sendFd's single descriptor is fds[0] of the message it sends.
      const err3 = await failure(() => sendFd(a, -1));
      assertArgError(err3, RangeError, 'ERR_OUT_OF_RANGE', /"fds\[0\]"|"fd"/);
      await a.close();
      await b.close();
    });
  });
});
