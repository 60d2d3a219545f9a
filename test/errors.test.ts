// Bad input: every public function answers with a clear, Node-shaped error and the process lives on.
// Argument errors are TypeError/RangeError with ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE /
// ERR_OUT_OF_RANGE; failed syscalls are FdpassSystemError (code, negative errno, syscall); fdpass's
// own failures are FdpassError with an ERR_FDPASS_* code.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as util from 'node:util';
import {
  Channel,
  ChannelServer,
  FdpassError,
  FdpassSystemError,
  MAX_FDS_PER_MESSAGE,
  adopt,
  bindDgram,
  bindReusePort,
  closeFd,
  connect,
  dupFd,
  fdOf,
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
import { openFds, newFds, settle } from './helpers/fds';
import { spawnJson } from './helpers/children';
import { tmpPath } from './helpers/tmp';

type AnyError = Error & { code?: unknown; errno?: unknown; syscall?: unknown; path?: unknown; address?: unknown; port?: unknown };

/** Lets a test pass a value its types forbid. */
const bad = (v: unknown): never => v as never;

/** Closes whatever an operation that should have failed returned anyway, so one bug does not cascade into leaks. */
async function dispose(v: unknown): Promise<void> {
  if (v instanceof Channel || v instanceof ChannelServer) await v.close();
  else if (v instanceof net.Server) await new Promise<void>((r) => v.close(() => r()));
  else if (v instanceof net.Socket) v.destroy();
  else if (v instanceof dgram.Socket) await new Promise<void>((r) => v.close(() => r()));
  else if (Array.isArray(v)) for (const x of v) await dispose(x);
  else if (v !== null && typeof v === 'object') {
    const o = v as { fd?: unknown; fds?: unknown };
    if (typeof o.fd === 'number') closeFd(o.fd);
    if (Array.isArray(o.fds)) for (const fd of o.fds) closeFd(fd as number);
  }
}

/** Runs `fn` (sync or async) and returns the error it threw or rejected with; fails if it succeeded. */
async function failure(fn: () => unknown, what = fn.toString()): Promise<AnyError> {
  let result: unknown;
  try {
    result = await fn();
  } catch (err) {
    assert.ok(err instanceof Error, `${what}: threw a non-Error ${util.inspect(err)}`);
    return err as AnyError;
  }
  await dispose(result);
  return assert.fail(`${what}: expected an error, but it succeeded with ${util.inspect(result, { depth: 0 })}`);
}

/** An argument error shaped like Node's own (class, own enumerable code, readable message). */
function assertArgError(err: AnyError, cls: typeof TypeError | typeof RangeError, code: string, message?: RegExp, what = ''): void {
  assert.ok(err instanceof cls, `${what}: expected a ${cls.name}, got ${err.name}: ${err.message}`);
  assert.equal(err.code, code, `${what}: code (message: ${err.message})`);
  assert.ok(Object.keys(err).includes('code'), `${what}: code must be an own enumerable property`);
  assert.ok(!(err instanceof FdpassSystemError), what);
  if (message) assert.match(err.message, message, what);
}

/** A system error shaped like Node's: code, negative errno matching it, syscall, and all three readable. */
function assertSystemError(err: AnyError, code: string, syscall: string, what = ''): void {
  assert.ok(err instanceof FdpassSystemError, `${what}: expected an FdpassSystemError, got ${err.name}: ${err.message}`);
  assert.ok(err instanceof Error, what);
  assert.equal(err.code, code, `${what}: code (message: ${err.message})`);
  assert.equal(err.syscall, syscall, `${what}: syscall (message: ${err.message})`);
  const errno = (os.constants.errno as Record<string, number>)[code];
  assert.equal(typeof errno, 'number', `${code} is a known errno`);
  assert.equal(err.errno, -errno!, `${what}: errno is the negative errno, as Node's`);
  assert.equal(util.getSystemErrorName(err.errno as number), code, what);
  assert.ok(err.message.includes(code), `${what}: the message names the code: ${err.message}`);
  assert.ok(err.message.includes(syscall), `${what}: the message names the syscall: ${err.message}`);
}

function assertFdpassError(err: AnyError, code: string, message?: RegExp, what = ''): void {
  assert.ok(err instanceof FdpassError, `${what}: expected an FdpassError, got ${err.name}: ${err.message}`);
  assert.equal(err.code, code, `${what}: code (message: ${err.message})`);
  if (message) assert.match(err.message, message, what);
}

/** A descriptor number that is certainly not open right now (use it at once, synchronously). */
function closedFd(): number {
  const fd = fs.openSync('/dev/null', 'r');
  fs.closeSync(fd);
  return fd;
}

function dirEntries(): string[] {
  return fs.readdirSync(path.dirname(tmpPath('x')));
}

/** A socket file whose owner (a python3 child) bound it and exited without unlinking it. */
function makeStaleSocket(p: string, type: 'SOCK_STREAM' | 'SOCK_SEQPACKET' | 'SOCK_DGRAM'): void {
  execFileSync('python3', ['-c', `import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.${type})\ns.bind(sys.argv[1])`, p]);
  assert.ok(fs.lstatSync(p).isSocket(), 'python left a socket file behind');
}

/** A server that hands every accepted channel to `accepted` (so the test can close them). */
async function listenCollecting(p: string, opts: Parameters<typeof listen>[1] = {}): Promise<{ server: ChannelServer; accepted: Channel[]; closeAll(): Promise<void> }> {
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

function nextConnection(server: ChannelServer): Promise<Channel> {
  return new Promise((resolve) => server.once('connection', resolve));
}

describe('errors', () => {
  describe('error shapes', () => {
    it("FdpassSystemError looks like Node's system errors: own enumerable code/errno/syscall, readable message", async () => {
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
      assertArgError(r, RangeError, 'ERR_OUT_OF_RANGE', /^The value of "fd" is out of range\. It must be an integer >= 0 and <= 2147483647\. Received -1$/);
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

    it('a closed fd is EBADF naming the syscall, for every function that uses one; the process and the channel live on', async () => {
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
      it(`an fd that is ${bv.label} is a ${bv.cls.name} ${bv.code} from every function, before any syscall`, async () => {
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

    it('a process that makes every bad call (closed fds, files and pipes given to toServer/toSocket/toDgram) does not abort', async function () {
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
      assert.ok(done.results.every((c) => /^(E[A-Z]+|ERR_[A-Z_]+)$/.test(c)), `every failure has a code: ${done.results.join(', ')}`);
    });
  });

  describe('wrong argument types', () => {
    it('every function rejects values of the wrong type with ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE / ERR_OUT_OF_RANGE', async () => {
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
        ['connect(p, {signal: {}})', () => connect(p, { signal: bad({}) }), T, TYPE, /"options\.signal" argument must be an instance of AbortSignal/],
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
        ['sendFd(ch, {})', () => sendFd(a, bad({})), T, TYPE, /must be of type number or an instance of net\.Server, net\.Socket or dgram\.Socket\. Received an instance of Object/],
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
        ['channel.send({fds: 3})', () => a.send({ data: 'x', fds: bad(3) }), T, TYPE, /"message\.fds" argument must be an instance of Array/],
        ["channel.receive({timeout: 'x'})", () => b.receive({ timeout: bad('x') }), T, TYPE, /"options\.timeout"/],
        ['toServer(fd, {})', () => toServer(someFd, bad({})), T, TYPE, /"server" argument must be an instance of net\.Server/],
        ["adopt('3')", () => adopt(bad('3')), T, TYPE, /"fd"/],
        ['fdOf({})', () => fdOf(bad({})), T, TYPE, /"fd" argument must be of type number or an instance of net\.Server, net\.Socket or dgram\.Socket\. Received an instance of Object/],
        ['fdOf(() => 3)', () => fdOf(bad(() => 3)), T, TYPE, /Received function/],
        ['listenReusePort()', () => listenReusePort(bad(undefined)), T, TYPE, /"options" argument must be of type object/],
        ['listenReusePort({})', () => listenReusePort(bad({})), T, TYPE, /"options\.port" argument must be of type number\. Received undefined/],
        ["listenReusePort({port: '80'})", () => listenReusePort({ port: bad('80') }), T, TYPE, /"options\.port"/],
        ['listenReusePort({port: -1})', () => listenReusePort({ port: -1 }), R, RANGE, /"options\.port" is out of range\. It must be an integer >= 0 and <= 65535\. Received -1/],
        ['listenReusePort({port: 65536})', () => listenReusePort({ port: 65536 }), R, RANGE, /"options\.port"/],
        ['listenReusePort({port: 1.5})', () => listenReusePort({ port: 1.5 }), R, RANGE, /"options\.port"/],
        ['listenReusePort({host: 5})', () => listenReusePort({ port: 0, host: bad(5) }), T, TYPE, /"options\.host"/],
        ['listenReusePort({backlog: -1})', () => listenReusePort({ port: 0, backlog: -1 }), R, RANGE, /"options\.backlog"/],
        ['listenReusePort({server: {}})', () => listenReusePort({ port: 0, server: bad({}) }), T, TYPE, /"options\.server" argument must be an instance of net\.Server/],
        ['bindReusePort(null)', () => bindReusePort(bad(null)), T, TYPE, /"options"/],
        ['bindReusePort({port: 0})', () => bindReusePort(bad({ port: 0 })), T, VALUE, /'options\.type' must be 'udp4' or 'udp6'\. Received undefined/],
        ["bindReusePort({type: 'udp5'})", () => bindReusePort({ port: 0, type: bad('udp5') }), T, VALUE, /'options\.type' must be 'udp4' or 'udp6'\. Received 'udp5'/],
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
        assertArgError(err, TypeError, 'ERR_INVALID_ARG_VALUE', /^The argument 'options\.type' must be 'seqpacket', 'stream' or 'dgram'\. Received /, what);
      }
      // 'dgram' is a valid kind, but a datagram socket cannot listen: fdpass says what to use instead.
      const err = await failure(() => listen(p, { type: 'dgram' }));
      assertFdpassError(err, 'ERR_FDPASS_WRONG_FD_KIND', /use bindDgram\(\)/);
      assert.deepEqual(dirEntries(), [], 'no socket file was created');
    });
  });

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

    it('connect to a path that is not a socket (a regular file, a directory) is the kernel\'s ECONNREFUSED', async () => {
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

    it('listen twice on one path while the first listens is EADDRINUSE; the first keeps its file and its clients', async () => {
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

    it('a live socket of another type keeps its path: listen/bindDgram fail with EADDRINUSE and replace nothing', async () => {
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
      for (const [kind, pyType] of [['seqpacket', 'SOCK_SEQPACKET'], ['stream', 'SOCK_STREAM'], ['stream', 'SOCK_SEQPACKET']] as const) {
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
          assertArgError(err, TypeError, 'ERR_INVALID_ARG_VALUE', /^The argument 'path' is longer than 107 bytes, the limit of a Unix socket name\./, what);
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

  describe('messages', () => {
    it('254 descriptors are a RangeError before any syscall, and no descriptor leaks', async () => {
      const [a, b] = socketPair();
      const fds = new Array<number>(MAX_FDS_PER_MESSAGE + 1).fill(0);
      assert.equal(fds.length, 254);
      const p = tmpPath('nobody-here.sock');
      const before = openFds();
      const calls: Array<[string, () => unknown, RegExp]> = [
        ['channel.send', () => a.send({ data: 'x', fds }), /"message\.fds\.length" is out of range\. It must be <= 253 \(SCM_MAX_FD\)\. Received 254/],
        ['sendFds(channel)', () => sendFds(a, fds, 'x'), /"fds\.length" is out of range\. It must be <= 253 \(SCM_MAX_FD\)\. Received 254/],
        // The path form checks before it connects: no one listens at p, yet the answer is the RangeError.
        ['sendFds(path)', () => sendFds(p, fds, 'x'), /"fds\.length".*Received 254/],
        ['channel.send (stream)', () => a.send({ fds: new Array<number>(1000).fill(1) }), /Received 1000/],
      ];
      for (const [what, call, message] of calls) {
        const err = await failure(call, what);
        assertArgError(err, RangeError, 'ERR_OUT_OF_RANGE', message, what);
      }
      await settle();
      assert.deepEqual(newFds(before, openFds()), [], 'no descriptor leaked');
      assert.equal(openFds().size, before.size);
      // Nothing was sent.
      await assert.rejects(b.receive({ timeout: 50 }), { code: 'ERR_FDPASS_TIMEOUT' });
      await a.close();
      await b.close();
    });

    it('a seqpacket message with neither data nor fds is ERR_INVALID_ARG_VALUE (it would read as end-of-file)', async () => {
      const [a, b] = socketPair({ type: 'seqpacket' });
      for (const msg of [{}, { data: '' }, { data: Buffer.alloc(0), fds: [] }, { data: null }, { data: new Uint8Array(0) }]) {
        const err = await failure(() => a.send(msg), util.inspect(msg));
        assertArgError(err, TypeError, 'ERR_INVALID_ARG_VALUE', /^The argument 'message' must carry data or fds on a seqpacket channel\./);
      }
      const err = await failure(() => sendFds(a, []));
      assertArgError(err, TypeError, 'ERR_INVALID_ARG_VALUE', /must carry data or fds on a seqpacket channel/);
      // The channel was not closed by the refusal, and the peer saw no end-of-file.
      await a.send({ data: 'after' });
      assert.equal((await b.receive()).data.toString(), 'after');
      assert.equal(b.closed, false);
      await a.close();
      await b.close();
    });

    it('recvFd on a message without a descriptor is ERR_FDPASS_NO_FD', async () => {
      const [a, b] = socketPair();
      await a.send({ data: 'no fd here' });
      const err = await failure(() => recvFd(b));
      assertFdpassError(err, 'ERR_FDPASS_NO_FD', /carried no descriptor/);
      // The path form: a sender connects and sends data only.
      const p = tmpPath('nofd.sock');
      const received = recvFd(p, { timeout: 10000 });
      await sendFds(p, [], 'data only');
      assertFdpassError(await failure(() => received), 'ERR_FDPASS_NO_FD');
      assert.ok(!fs.existsSync(p), 'the path form removes its socket');
      await a.close();
      await b.close();
    });

    it('recvFd on a message with 2 descriptors is ERR_FDPASS_TOO_MANY_FDS and closes both', async () => {
      const [a, b] = socketPair();
      const f1 = fs.openSync('/dev/null', 'r');
      const f2 = fs.openSync('/dev/zero', 'r');
      await a.send({ data: 'two', fds: [f1, f2] });
      fs.closeSync(f1);
      fs.closeSync(f2);
      const before = openFds();
      const err = await failure(() => recvFd(b));
      assertFdpassError(err, 'ERR_FDPASS_TOO_MANY_FDS', /carried 2 descriptors, expected 1 \(use recvFds\)/);
      assert.deepEqual(newFds(before, openFds()), [], 'both received descriptors were closed');
      assert.equal(openFds().size, before.size);

      // The path form as well.
      const p = tmpPath('twofds.sock');
      const g1 = fs.openSync('/dev/null', 'r');
      const g2 = fs.openSync('/dev/zero', 'r');
      const before2 = openFds();
      const received = recvFd(p, { timeout: 10000 });
      await sendFds(p, [g1, g2], 'two');
      assertFdpassError(await failure(() => received), 'ERR_FDPASS_TOO_MANY_FDS');
      await settle();
      assert.deepEqual(newFds(before2, openFds()), [], 'path form: both closed, and the server and channel too');
      fs.closeSync(g1);
      fs.closeSync(g2);
      await a.close();
      await b.close();
    });

    it('sendFd/sendFds/send over a closed channel are ERR_FDPASS_CLOSED; over a channel whose peer left, the kernel\'s EPIPE', async () => {
      const [a, b] = socketPair();
      await a.close();
      assertFdpassError(await failure(() => sendFd(a, 0, 'x')), 'ERR_FDPASS_CLOSED', /closed/);
      assertFdpassError(await failure(() => sendFd(a, 0)), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => sendFds(a, [0, 1], 'x')), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => a.send({ data: 'x' })), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => recvFd(a)), 'ERR_FDPASS_CLOSED');
      assertFdpassError(await failure(() => recvFds(a)), 'ERR_FDPASS_CLOSED');
      assert.equal(a.fd, -1);
      await b.close();

      const [c, d] = socketPair();
      c.destroy();
      assertFdpassError(await failure(() => sendFd(c, 0, 'x')), 'ERR_FDPASS_CLOSED');
      await d.close();

      // The peer closed and this side has not read the end-of-file yet: sendmsg reports EPIPE.
      const [e, f] = socketPair();
      await f.close();
      assertSystemError(await failure(() => sendFd(e, 0, 'x')), 'EPIPE', 'sendmsg');
      // Once the end-of-file is seen, fdpass's own ERR_FDPASS_CLOSED.
      assertFdpassError(await failure(() => e.receive()), 'ERR_FDPASS_CLOSED', /peer closed/);
      assertFdpassError(await failure(() => sendFd(e, 0, 'x')), 'ERR_FDPASS_CLOSED');
      await e.close();
    });
  });

  describe('reuseport', () => {
    it('listenReusePort on a port held without SO_REUSEPORT is EADDRINUSE with address and port', async () => {
      const plain = net.createServer();
      await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
      const port = (plain.address() as net.AddressInfo).port;
      const before = openFds();
      const err = await failure(() => listenReusePort({ port, host: '127.0.0.1' }));
      assertSystemError(err, 'EADDRINUSE', 'bind');
      assert.equal(err.address, '127.0.0.1');
      assert.equal(err.port, port);
      assert.equal(err.message, `bind EADDRINUSE: address already in use 127.0.0.1:${port}`);
      assert.deepEqual(Object.keys(err).sort(), ['address', 'code', 'errno', 'port', 'syscall']);
      await settle();
      assert.deepEqual(newFds(before, openFds()), [], 'the refused socket was closed');
      await new Promise<void>((r) => plain.close(() => r()));
    });

    it('bindReusePort on a UDP port held without SO_REUSEPORT is EADDRINUSE with address and port', async () => {
      const plain = dgram.createSocket('udp4');
      await new Promise<void>((r) => plain.bind(0, '127.0.0.1', () => r()));
      const port = plain.address().port;
      const err = await failure(() => bindReusePort({ port, host: '127.0.0.1', type: 'udp4' }));
      assertSystemError(err, 'EADDRINUSE', 'bind');
      assert.equal(err.address, '127.0.0.1');
      assert.equal(err.port, port);
      await new Promise<void>((r) => plain.close(() => r()));
    });

    it("bindReusePort refuses a host of the other family than 'type' (as Node's dgram does: bind EINVAL)", async () => {
      const r = await bindReusePort({ port: 0, type: 'udp4', host: '::1' }).then(
        async (s) => {
          const a = s.address();
          const got = `a socket of family ${a.family} bound to ${a.address}`;
          await dispose(s);
          return got;
        },
        (e: AnyError) => (e.code === 'EINVAL' || e.code === 'ERR_INVALID_ARG_VALUE' ? 'refused' : `${String(e.code)}: ${e.message}`),
      );
      // Regression: an IP literal's own family once silently overrode 'type'.
      assert.equal(r, 'refused', `bindReusePort({ type: 'udp4', host: '::1' }) gave ${r}`);
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
        ["{ signal: 'x' }", { signal: 'x' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"options\.signal" argument must be an instance of AbortSignal/],
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
            new Promise<never>((_r, reject) => setTimeout(() => reject(new Error(`${fn.name}(path, ${what}) is still waiting`)), 1000).unref()),
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
      assert.deepEqual({ noListener, withListener, receiver }, { noListener: 'ERR_INVALID_ARG_TYPE', withListener: 'ERR_INVALID_ARG_TYPE', receiver: 'ERR_FDPASS_TIMEOUT' });
    });

    it('sendFds(target, [0, 1.5]) names the bad element, as channel.send does ("message.fds[1]")', async () => {
      const [a, b] = socketPair();
      const err = await failure(() => sendFds(a, [0, 1.5]));
      assertArgError(err, RangeError, 'ERR_OUT_OF_RANGE', /^The value of "fds\[1\]" is out of range\./);
      const err2 = await failure(() => sendFds(a, [0, 1, bad('2')]));
      assertArgError(err2, TypeError, 'ERR_INVALID_ARG_TYPE', /^The "fds\[2\]" argument must be of type number or an instance of net\.Server/);
      // sendFd's single descriptor is fds[0] of the message it sends.
      const err3 = await failure(() => sendFd(a, -1));
      assertArgError(err3, RangeError, 'ERR_OUT_OF_RANGE', /"fds\[0\]"|"fd"/);
      await a.close();
      await b.close();
    });
  });
});
