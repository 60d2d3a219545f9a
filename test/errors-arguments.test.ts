// Bad arguments: every public function answers with a clear, Node-shaped error and the process lives
// on. The shapes of the three error kinds; invalid descriptors (closed, negative, not a socket); wrong
// argument types. (Paths: errors-paths.test.ts; messages: errors-messages.test.ts; SO_REUSEPORT binds: reuseport.test.ts.)
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as util from 'node:util';
import { execFileSync } from 'node:child_process';
import {
  adopt,
  bindDgram,
  bindReusePort,
  type Channel,
  closeFd,
  connect,
  dupFd,
  fdOf,
  FdpassSystemError,
  inspect,
  listen,
  listenReusePort,
  recvFd,
  recvFds,
  sendFd,
  sendFds,
  socketPair,
  toDgram,
  toServer,
  toSocket,
} from 'fdpass';
import { assertArgError, assertFdpassError, assertSystemError, bad, failure } from './helpers/errors';
import { closedFd, newFds, openFds } from './helpers/fds';
import { dirEntries, tmpPath } from './helpers/tmp';
import { spawnJson } from './helpers/children';

describe('errors: argument checks', () => {
  describe('error shapes', () => {
    it("FdpassSystemError looks like Node's system errors: own code/errno/syscall, readable message", async () => {
      const fd = closedFd();
      const err = await failure(() => closeFd(fd));
      assertSystemError(err, 'EBADF', 'close');
      assert.equal(err.name, 'FdpassSystemError');
      assert.match(err.message, /EBADF/);
      assert.match(err.message, /bad file descriptor/);
      assert.match(String(err), /^FdpassSystemError: close EBADF: bad file descriptor/);
      assert.ok(err.stack?.includes('close EBADF'), 'the stack starts with the message');
      // Node's own: fs.closeSync(bad) has own enumerable errno, code, syscall.
      let nodeErr: NodeJS.ErrnoException | undefined;
      const fd2 = closedFd();
      try {
        fs.closeSync(fd2);
      } catch (e) {
        nodeErr = e as NodeJS.ErrnoException;
      }
      assert.ok(nodeErr);
      const keys = Object.keys(err);
      for (const k of ['errno', 'code', 'syscall']) {
        assert.ok(Object.keys(nodeErr).includes(k), `Node's error has ${k}`);
        assert.ok(keys.includes(k), `FdpassSystemError has own enumerable ${k} (keys: ${keys.join(', ')})`);
        const d = Object.getOwnPropertyDescriptor(err, k);
        assert.equal(d?.enumerable, true, k);
      }
      assert.equal(err.errno, nodeErr.errno, 'same errno number as Node reports for EBADF');
      assert.equal(err.code, nodeErr.code);
      // util.inspect (what a crash report prints) shows the fields.
      const shown = util.inspect(err);
      assert.match(shown, /code: 'EBADF'/);
      assert.match(shown, /syscall: 'close'/);
      assert.match(shown, /errno: -9/);
    });

    it('FdpassError has an own enumerable ERR_FDPASS_* code and is not a system error', async () => {
      const [a, b] = socketPair();
      await a.close();
      const err = await failure(() => a.send({ data: 'x' }));
      assertFdpassError(err, 'ERR_FDPASS_CLOSED', /closed/);
      assert.equal(err.name, 'FdpassError');
      assert.ok(err instanceof Error);
      assert.ok(!(err instanceof FdpassSystemError));
      assert.deepEqual(Object.keys(err), ['code']);
      assert.match(String(err), /^FdpassError: /);
      assert.match(util.inspect(err), /code: 'ERR_FDPASS_CLOSED'/);
      await b.close();
    });

    it("argument errors carry Node's codes as own enumerable properties and Node's wording", async () => {
      const t = await failure(() => inspect(bad('3')));
      assertArgError(t, TypeError, 'ERR_INVALID_ARG_TYPE', /^The "fd" argument must be of type number\. Received type string \('3'\)$/);
      assert.match(util.inspect(t), /code: 'ERR_INVALID_ARG_TYPE'/);
      const r = await failure(() => inspect(-1));
      assertArgError(
        r,
        RangeError,
        'ERR_OUT_OF_RANGE',
        /^The value of "fd" is out of range\. It must be an integer >= 0 and <= 2147483647\. Received -1$/,
      );
      const v = await failure(() => connect(''));
      assertArgError(v, TypeError, 'ERR_INVALID_ARG_VALUE', /^The argument 'path' /);
    });
  });

  describe('invalid descriptors', () => {
    interface FdOp {
      name: string;
      call: (fd: unknown) => unknown;
      /** The syscall that reports EBADF for a closed fd; null when the function does not touch the fd. */
      syscall: string | null;
      /** How the argument is named in the message. */
      arg: RegExp;
    }

    function fdOps(ch: Channel): FdOp[] {
      return [
        { name: 'inspect', call: (fd) => inspect(bad(fd)), syscall: 'fstat', arg: /"fd"/ },
        { name: 'toServer', call: (fd) => toServer(bad(fd)), syscall: 'fstat', arg: /"fd"/ },
        { name: 'toSocket', call: (fd) => toSocket(bad(fd)), syscall: 'fstat', arg: /"fd"/ },
        { name: 'toDgram', call: (fd) => toDgram(bad(fd)), syscall: 'fstat', arg: /"fd"/ },
        { name: 'adopt', call: (fd) => adopt(bad(fd)), syscall: 'fstat', arg: /"fd"/ },
        { name: 'closeFd', call: (fd) => closeFd(bad(fd)), syscall: 'close', arg: /"fd"/ },
        { name: 'dupFd', call: (fd) => dupFd(bad(fd)), syscall: 'fcntl', arg: /"fd"/ },
        { name: 'fdOf', call: (fd) => fdOf(bad(fd)), syscall: null, arg: /"fd"/ },
        { name: 'sendFd', call: (fd) => sendFd(ch, bad(fd), 'x'), syscall: 'sendmsg', arg: /"fd"/ },
        { name: 'sendFds', call: (fd) => sendFds(ch, [0, bad(fd)], 'x'), syscall: 'sendmsg', arg: /"fds\[1\]"/ },
        { name: 'channel.send', call: (fd) => ch.send({ data: 'x', fds: [bad(fd)] }), syscall: 'sendmsg', arg: /"message\.fds\[0\]"/ },
      ];
    }

    it('a closed fd is EBADF naming the syscall, for every function; the process and channel live on', async () => {
      const [a, b] = socketPair();
      for (const op of fdOps(a)) {
        if (op.syscall === null) continue;
        const err = await failure(() => op.call(closedFd()), op.name);
        assertSystemError(err, 'EBADF', op.syscall, op.name);
        assert.match(err.message, new RegExp(`^${op.syscall} EBADF: bad file descriptor$`), op.name);
      }
      // A send refused for a bad fd does not break the channel.
      await a.send({ data: 'still open' });
      assert.equal((await b.receive()).data.toString(), 'still open');
      await a.close();
      await b.close();
    });

    const badValues: Array<{ label: string; value: unknown; cls: typeof TypeError | typeof RangeError; code: string; shown: RegExp }> = [
      { label: 'negative', value: -1, cls: RangeError, code: 'ERR_OUT_OF_RANGE', shown: /Received -1$/ },
      { label: 'non-integer', value: 1.5, cls: RangeError, code: 'ERR_OUT_OF_RANGE', shown: /Received 1\.5$/ },
      { label: 'NaN', value: NaN, cls: RangeError, code: 'ERR_OUT_OF_RANGE', shown: /Received NaN$/ },
      { label: 'Infinity', value: Infinity, cls: RangeError, code: 'ERR_OUT_OF_RANGE', shown: /Received Infinity$/ },
      { label: '2^31', value: 2 ** 31, cls: RangeError, code: 'ERR_OUT_OF_RANGE', shown: /Received 2147483648$/ },
      { label: "the string '3'", value: '3', cls: TypeError, code: 'ERR_INVALID_ARG_TYPE', shown: /Received type string \('3'\)$/ },
      { label: 'null', value: null, cls: TypeError, code: 'ERR_INVALID_ARG_TYPE', shown: /Received null$/ },
      { label: 'undefined', value: undefined, cls: TypeError, code: 'ERR_INVALID_ARG_TYPE', shown: /Received undefined$/ },
      { label: 'a bigint', value: 3n, cls: TypeError, code: 'ERR_INVALID_ARG_TYPE', shown: /Received type bigint \(3n\)$/ },
      { label: 'a boolean', value: true, cls: TypeError, code: 'ERR_INVALID_ARG_TYPE', shown: /Received type boolean \(true\)$/ },
    ];

    for (const bv of badValues) {
      it(`an fd that is ${bv.label} is a ${bv.cls.name} ${bv.code} everywhere, before any syscall`, async () => {
        const [a, b] = socketPair();
        const before = openFds();
        for (const op of fdOps(a)) {
          const what = `${op.name}(${util.inspect(bv.value)})`;
          const err = await failure(() => op.call(bv.value), what);
          assertArgError(err, bv.cls, bv.code, op.arg, what);
          assert.match(err.message, bv.shown, what);
        }
        assert.deepEqual(newFds(before, openFds()), [], 'no descriptor was opened');
        await a.send({ data: 'ok' });
        assert.equal((await b.receive()).data.toString(), 'ok');
        await a.close();
        await b.close();
      });
    }

    // Closed fds, and files and pipes given to toServer/toSocket/toDgram.
    it('a process that makes every bad call does not abort', async function () {
      this.timeout(20000);
      const file = tmpPath('plain.txt');
      fs.writeFileSync(file, 'x');
      const fifo = tmpPath('fifo');
      execFileSync('mkfifo', [fifo]);
      const script = `
        const f = require(${JSON.stringify(require.resolve('fdpass'))});
        const fs = require('fs');
        const results = [];
        const closed = () => { const fd = fs.openSync('/dev/null', 'r'); fs.closeSync(fd); return fd; };
        (async () => {
          const file = fs.openSync(${JSON.stringify(file)}, 'r');
          const r = fs.openSync(${JSON.stringify(fifo)}, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
          const w = fs.openSync(${JSON.stringify(fifo)}, fs.constants.O_WRONLY);
          const [a, b] = f.socketPair();
          const calls = [];
          for (const fd of [file, r, w]) {
            calls.push(() => f.toServer(fd), () => f.toSocket(fd), () => f.toDgram(fd), () => f.adopt(fd));
          }
          for (const v of [-1, 1.5, NaN, '3', null, {}]) {
            calls.push(() => f.inspect(v), () => f.closeFd(v), () => f.dupFd(v), () => f.fdOf(v), () => f.adopt(v), () => f.toSocket(v));
            calls.push(() => f.sendFd(a, v), () => f.sendFds(a, [v]), () => a.send({ data: 'x', fds: [v] }));
          }
          calls.push(() => f.closeFd(closed()), () => f.dupFd(closed()), () => f.toSocket(closed()), () => f.toServer(closed()));
          calls.push(() => f.sendFd(a, closed(), 'x'), () => f.toDgram(closed()), () => f.adopt(closed()));
          for (const call of calls) {
            try { await call(); results.push('ok'); } catch (e) { results.push(e.code || e.name); }
          }
          fs.closeSync(file); fs.closeSync(r); fs.closeSync(w);
          await a.close(); await b.close();
          console.log(JSON.stringify({ event: 'done', results }));
        })().catch((e) => { console.log(JSON.stringify({ event: 'error', message: e.message, stack: e.stack })); process.exitCode = 1; });
      `;
      const child = spawnJson(process.execPath, ['-e', script]);
      const done = await child.expect<{ results: string[] }>('done');
      const exit = await child.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, child.stderr());
      assert.ok(done.results.length > 60);
      assert.ok(!done.results.includes('ok'), `every bad call failed: ${done.results.join(', ')}`);
      assert.ok(
        done.results.every((c) => /^(E[A-Z]+|ERR_[A-Z_]+)$/.test(c)),
        `every failure has a code: ${done.results.join(', ')}`,
      );
    });
  });

  describe('wrong argument types', () => {
    // ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE or ERR_OUT_OF_RANGE.
    it('every function rejects values of the wrong type with a Node-style code', async () => {
      const p = tmpPath('never.sock');
      const [a, b] = socketPair();
      const someFd = fs.openSync('/dev/null', 'r');
      const T = TypeError;
      const R = RangeError;
      const TYPE = 'ERR_INVALID_ARG_TYPE';
      const VALUE = 'ERR_INVALID_ARG_VALUE';
      const RANGE = 'ERR_OUT_OF_RANGE';
      const cases: Array<[string, () => unknown, typeof TypeError | typeof RangeError, string, RegExp]> = [
        ['connect(42)', () => connect(bad(42)), T, TYPE, /"path" argument must be of type string\. Received type number \(42\)/],
        ['connect({})', () => connect(bad({})), T, TYPE, /"path" argument must be of type string\. Received an instance of Object/],
        ["connect('')", () => connect(''), T, VALUE, /'path' must be a non-empty/],
        ['connect(path with NUL)', () => connect('/tmp/a\0b'), T, VALUE, /null bytes/],
        ["connect(p, 'x')", () => connect(p, bad('x')), T, TYPE, /"options" argument must be of type object/],
        ['connect(p, null)', () => connect(p, bad(null)), T, TYPE, /"options" argument must be of type object\. Received null/],
        ['connect(p, {timeout: -1})', () => connect(p, { timeout: -1 }), R, RANGE, /"options\.timeout"/],
        ["connect(p, {timeout: '1'})", () => connect(p, { timeout: bad('1') }), T, TYPE, /"options\.timeout"/],
        [
          'connect(p, {signal: {}})',
          () => connect(p, { signal: bad({}) }),
          T,
          TYPE,
          /"options\.signal" argument must be an instance of AbortSignal/,
        ],
        ['listen(42)', () => listen(bad(42)), T, TYPE, /"path"/],
        ['listen(p, {backlog: -1})', () => listen(p, { backlog: -1 }), R, RANGE, /"options\.backlog"/],
        ['listen(p, {backlog: 1.5})', () => listen(p, { backlog: 1.5 }), R, RANGE, /"options\.backlog"/],
        ["listen(p, {mode: '600'})", () => listen(p, { mode: bad('600') }), T, TYPE, /"options\.mode"/],
        ['listen(p, {mode: 0o10000})', () => listen(p, { mode: 0o10000 }), R, RANGE, /"options\.mode"/],
        ['listen(p, {allow: true})', () => listen(p, { allow: bad(true) }), T, TYPE, /"options\.allow" argument must be of type function/],
        ["listen(p, 'x')", () => listen(p, bad('x')), T, TYPE, /"options"/],
        ['bindDgram(42)', () => bindDgram(bad(42)), T, TYPE, /"path"/],
        ['bindDgram(p, null)', () => bindDgram(p, bad(null)), T, TYPE, /"options"/],
        ["socketPair('x')", () => socketPair(bad('x')), T, TYPE, /"options"/],
        ['socketPair(null)', () => socketPair(bad(null)), T, TYPE, /"options"/],
        ['sendFd(42, 0)', () => sendFd(bad(42), 0), T, TYPE, /"target" argument must be of type string or an instance of Channel/],
        [
          'sendFd(ch, {})',
          () => sendFd(a, bad({})),
          T,
          TYPE,
          /must be of type number or an instance of net\.Server, net\.Socket or dgram\.Socket\. Received an instance of Object/,
        ],
        ['sendFd(ch, 0, 42)', () => sendFd(a, 0, bad(42)), T, TYPE, /"data" argument must be of type string or an instance of Buffer/],
        ["sendFds(ch, 'abc')", () => sendFds(a, bad('abc')), T, TYPE, /"fds" argument must be an instance of Array/],
        ['sendFds(ch, {})', () => sendFds(a, bad({})), T, TYPE, /"fds"/],
        ['sendFds(ch, [0, {}])', () => sendFds(a, [0, bad({})]), T, TYPE, /Received an instance of Object/],
        ['recvFd(42)', () => recvFd(bad(42)), T, TYPE, /"source" argument must be of type string or an instance of Channel/],
        ['recvFds({})', () => recvFds(bad({})), T, TYPE, /"source"/],
        ["recvFd(ch, 'x')", () => recvFd(b, bad('x')), T, TYPE, /"options"/],
        ['recvFd(ch, {timeout: -1})', () => recvFd(b, { timeout: -1 }), R, RANGE, /"options\.timeout"/],
        ['recvFds(ch, {signal: 1})', () => recvFds(b, { signal: bad(1) }), T, TYPE, /"options\.signal"/],
        ['channel.send(null)', () => a.send(bad(null)), T, TYPE, /"message" argument must be of type object\. Received null/],
        ["channel.send('x')", () => a.send(bad('x')), T, TYPE, /"message"/],
        ['channel.send([])', () => a.send(bad([])), T, TYPE, /"message"/],
        ['channel.send({data: 5})', () => a.send({ data: bad(5) }), T, TYPE, /"message\.data"/],
        ['channel.send({data: {}})', () => a.send({ data: bad({}) }), T, TYPE, /"message\.data"/],
        [
          'channel.send({fds: 3})',
          () => a.send({ data: 'x', fds: bad(3) }),
          T,
          TYPE,
          /"message\.fds" argument must be an instance of Array/,
        ],
        ["channel.receive({timeout: 'x'})", () => b.receive({ timeout: bad('x') }), T, TYPE, /"options\.timeout"/],
        ['toServer(fd, {})', () => toServer(someFd, bad({})), T, TYPE, /"server" argument must be an instance of net\.Server/],
        ["adopt('3')", () => adopt(bad('3')), T, TYPE, /"fd"/],
        [
          'fdOf({})',
          () => fdOf(bad({})),
          T,
          TYPE,
          /"fd" argument must be of type number or an instance of net\.Server, net\.Socket or dgram\.Socket\. Received an instance of Object/,
        ],
        ['fdOf(() => 3)', () => fdOf(bad(() => 3)), T, TYPE, /Received function/],
        ['listenReusePort()', () => listenReusePort(bad(undefined)), T, TYPE, /"options" argument must be of type object/],
        [
          'listenReusePort({})',
          () => listenReusePort(bad({})),
          T,
          TYPE,
          /"options\.port" argument must be of type number\. Received undefined/,
        ],
        ["listenReusePort({port: '80'})", () => listenReusePort({ port: bad('80') }), T, TYPE, /"options\.port"/],
        [
          'listenReusePort({port: -1})',
          () => listenReusePort({ port: -1 }),
          R,
          RANGE,
          /"options\.port" is out of range\. It must be an integer >= 0 and <= 65535\. Received -1/,
        ],
        ['listenReusePort({port: 65536})', () => listenReusePort({ port: 65536 }), R, RANGE, /"options\.port"/],
        ['listenReusePort({port: 1.5})', () => listenReusePort({ port: 1.5 }), R, RANGE, /"options\.port"/],
        ['listenReusePort({host: 5})', () => listenReusePort({ port: 0, host: bad(5) }), T, TYPE, /"options\.host"/],
        ['listenReusePort({backlog: -1})', () => listenReusePort({ port: 0, backlog: -1 }), R, RANGE, /"options\.backlog"/],
        [
          'listenReusePort({server: {}})',
          () => listenReusePort({ port: 0, server: bad({}) }),
          T,
          TYPE,
          /"options\.server" argument must be an instance of net\.Server/,
        ],
        ['bindReusePort(null)', () => bindReusePort(bad(null)), T, TYPE, /"options"/],
        [
          'bindReusePort({port: 0})',
          () => bindReusePort(bad({ port: 0 })),
          T,
          VALUE,
          /'options\.type' must be 'udp4' or 'udp6'\. Received undefined/,
        ],
        [
          "bindReusePort({type: 'udp5'})",
          () => bindReusePort({ port: 0, type: bad('udp5') }),
          T,
          VALUE,
          /'options\.type' must be 'udp4' or 'udp6'\. Received 'udp5'/,
        ],
        ["bindReusePort({type: 'tcp4'})", () => bindReusePort({ port: 0, type: bad('tcp4') }), T, VALUE, /'options\.type'/],
        ["bindReusePort({port: 'x'})", () => bindReusePort({ port: bad('x'), type: 'udp4' }), T, TYPE, /"options\.port"/],
        ['bindReusePort({port: 70000})', () => bindReusePort({ port: 70000, type: 'udp4' }), R, RANGE, /"options\.port"/],
      ];
      const before = openFds();
      for (const [what, call, cls, code, message] of cases) {
        const err = await failure(call, what);
        assertArgError(err, cls, code, message, what);
      }
      assert.deepEqual(dirEntries(), [], 'no socket file was created');
      assert.deepEqual(newFds(before, openFds()), [], 'no descriptor was opened');
      // The descriptor given to toServer with a bad server is untouched.
      assert.equal(inspect(someFd).kind, 'char');
      fs.closeSync(someFd);
      await a.send({ data: 'ok' });
      assert.equal((await b.receive()).data.toString(), 'ok');
      await a.close();
      await b.close();
    });

    it("an invalid 'type' option is ERR_INVALID_ARG_VALUE everywhere it is accepted, and creates nothing", async () => {
      const p = tmpPath('typed.sock');
      const calls: Array<[string, () => unknown]> = [
        ["connect(p, {type: 'bogus'})", () => connect(p, { type: bad('bogus') })],
        ["listen(p, {type: 'bogus'})", () => listen(p, { type: bad('bogus') })],
        ["listen(p, {type: 'STREAM'})", () => listen(p, { type: bad('STREAM') })],
        ["socketPair({type: 'bogus'})", () => socketPair({ type: bad('bogus') })],
        ['socketPair({type: 1})', () => socketPair({ type: bad(1) })],
        ["recvFd(p, {type: 'bogus'})", () => recvFd(p, { type: bad('bogus') })],
        ["recvFds(p, {type: 'raw'})", () => recvFds(p, { type: bad('raw') })],
        ["sendFd(p, 0, 'x', {type: 'bogus'})", () => sendFd(p, 0, 'x', { type: bad('bogus') })],
      ];
      for (const [what, call] of calls) {
        const err = await failure(call, what);
        assertArgError(
          err,
          TypeError,
          'ERR_INVALID_ARG_VALUE',
          /^The argument 'options\.type' must be 'seqpacket', 'stream' or 'dgram'\. Received /,
          what,
        );
      }
      // 'dgram' is a valid kind, but a datagram socket cannot listen: fdpass says what to use instead.
      const err = await failure(() => listen(p, { type: 'dgram' }));
      assertFdpassError(err, 'ERR_FDPASS_WRONG_FD_KIND', /use bindDgram\(\)/);
      assert.deepEqual(dirEntries(), [], 'no socket file was created');
    });
  });
});
