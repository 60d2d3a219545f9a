// SO_REUSEPORT: listenReusePort/bindReusePort share one port between listeners of one process or of
// several, TCP and UDP; host '' and scoped IPv6 addresses; binds that must fail, with what they say.
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { bindReusePort, fdOf, inspect, listenReusePort } from 'fdpass';
import { runFixture } from './helpers/children';
import { type AnyError, assertSystemError, dispose, failure } from './helpers/errors';
import { newFds, openFds, settle } from './helpers/fds';
import { get, whoServes } from './helpers/http';
import { ipv6Loopback, requires } from './helpers/requires';
import { closeDgram, closeServer, greeter, nextDatagram, portOf, sendDatagram, sock, tcpHello } from './helpers/sockets';

describe('SO_REUSEPORT', () => {
  it('listenReusePort twice on one port in one process: both listen and connections are served', async () => {
    const first = await listenReusePort({ port: 0, host: '127.0.0.1', server: greeter('first') });
    const port = portOf(first);
    const second = await listenReusePort({ port, host: '127.0.0.1', server: greeter('second') });
    assert.equal(portOf(second), port);
    for (const s of [first, second]) {
      assert.equal(s.listening, true);
      const info = sock(inspect(fdOf(s)));
      assert.equal(info.listening, true);
      assert.deepEqual(info.local, { family: 'IPv4', address: '127.0.0.1', port });
    }
    assert.notEqual(fdOf(first), fdOf(second), 'two sockets, not one shared');
    for (let i = 0; i < 8; i++) {
      const answer = await tcpHello(port);
      assert.ok(answer === 'first' || answer === 'second', answer);
    }
    await closeServer(first);
    assert.equal(await tcpHello(port), 'second', 'the second serves alone once the first closed');
    await closeServer(second);
  });

  it('listenReusePort adopts into an http.Server that serves', async () => {
    const server = http.createServer((req, res) => {
      res.setHeader('connection', 'close');
      res.end(`reuseport ${req.url!}`);
    });
    const s = await listenReusePort({ port: 0, host: '127.0.0.1', server });
    assert.equal(s, server);
    assert.equal(await get(portOf(s), '/x'), 'reuseport /x');
    await closeServer(s);
  });

  // Dual-stack ::, or 0.0.0.0.
  it('listenReusePort without host listens on every address and accepts 127.0.0.1', async () => {
    const s = await listenReusePort({ port: 0, server: greeter('any') });
    const info = sock(inspect(fdOf(s)));
    if (info.domain === 'inet6') assert.deepEqual(info.local, { family: 'IPv6', address: '::', port: portOf(s) });
    else assert.deepEqual(info.local, { family: 'IPv4', address: '0.0.0.0', port: portOf(s) });
    assert.equal(await tcpHello(portOf(s)), 'any');
    await closeServer(s);
  });

  it('bindReusePort twice for udp4 on one port: both bound, a datagram reaches one of them', async () => {
    const first = await bindReusePort({ port: 0, host: '127.0.0.1', type: 'udp4' });
    const port = first.address().port;
    const second = await bindReusePort({ port, host: '127.0.0.1', type: 'udp4' });
    assert.equal(second.address().port, port);
    assert.notEqual(fdOf(first), fdOf(second));
    for (const u of [first, second]) {
      const info = sock(inspect(fdOf(u)));
      assert.equal(info.type, 'dgram');
      assert.deepEqual(info.local, { family: 'IPv4', address: '127.0.0.1', port });
    }
    const arrived = Promise.race([nextDatagram(first).then((d) => `first:${d.msg}`), nextDatagram(second).then((d) => `second:${d.msg}`)]);
    await sendDatagram('hello reuseport', port);
    const got = await arrived;
    assert.match(got, /^(first|second):hello reuseport$/);
    first.removeAllListeners('message');
    second.removeAllListeners('message');
    await closeDgram(first);
    await closeDgram(second);
  });

  it('two processes listen on one TCP port and connections reach both', async () => {
    const first = runFixture('reuseport-server', ['tcp', '0']);
    const { port } = await first.expect<{ port: number }>('ready');
    const second = runFixture('reuseport-server', ['tcp', String(port)]);
    await second.expect('ready');
    const r = await whoServes(port, 200, 8);
    assert.deepEqual(r.errors, []);
    assert.ok((r.served.get(String(first.pid)) ?? 0) > 0, 'first served');
    assert.ok((r.served.get(String(second.pid)) ?? 0) > 0, 'second served');
    for (const c of [first, second]) {
      c.send({ cmd: 'stop' });
      await c.expect('stopped');
      c.proc.stdin!.end();
      assert.deepEqual(await c.exited, { code: 0, signal: null });
    }
  });

  it('two processes bind one UDP port and datagrams reach both', async () => {
    const first = runFixture('reuseport-server', ['udp', '0']);
    const { port } = await first.expect<{ port: number }>('ready');
    const second = runFixture('reuseport-server', ['udp', String(port)]);
    await second.expect('ready');
    const seen = new Set<string>();
    // The kernel picks a socket by hashing the source address: vary the source port.
    for (let i = 0; i < 64 && seen.size < 2; i++) {
      const client = dgram.createSocket('udp4');
      client.send('who', port, '127.0.0.1');
      const [msg] = (await once(client, 'message')) as [Buffer];
      seen.add(msg.toString());
      await new Promise<void>((resolve) => client.close(() => resolve()));
    }
    assert.deepEqual([...seen].sort(), [String(first.pid), String(second.pid)].sort());
    for (const c of [first, second]) {
      c.send({ cmd: 'stop' });
      await c.expect('stopped');
      c.proc.stdin!.end();
      assert.deepEqual(await c.exited, { code: 0, signal: null });
    }
  });

  describe("host '' and scoped IPv6 addresses", () => {
    it("host '' means every address, as in Node's listen({ host: '' }); no DEP0118 warning", async () => {
      const warnings: Error[] = [];
      const onWarning = (w: Error): void => {
        warnings.push(w);
      };
      process.on('warning', onWarning);
      try {
        const server = await listenReusePort({ port: 0, host: '', server: greeter('every address') });
        const a = server.address() as net.AddressInfo;
        assert.ok(a.address === '::' || a.address === '0.0.0.0', a.address);
        assert.equal(await tcpHello(a.port, '127.0.0.1'), 'every address');
        await closeServer(server);
        const udp = await bindReusePort({ port: 0, host: '', type: 'udp4' });
        assert.equal(udp.address().address, '0.0.0.0');
        await closeDgram(udp);
        await settle();
      } finally {
        process.off('warning', onWarning);
      }
      assert.deepEqual(
        warnings.map((w) => w.message),
        [],
      );
    });

    it("'::1%lo' and '::1%<index of lo>' listen on ::1 and a client connects through loopback; udp6 too", async function () {
      requires(this, ipv6Loopback());
      const index = Number(fs.readFileSync('/sys/class/net/lo/ifindex', 'utf8'));
      for (const host of ['::1%lo', `::1%${index}`]) {
        const server = await listenReusePort({ port: 0, host, server: greeter(host) });
        const a = server.address() as net.AddressInfo;
        assert.equal(a.address, '::1');
        assert.equal(await tcpHello(a.port, '::1'), host);
        await closeServer(server);
      }
      const udp = await bindReusePort({ port: 0, host: '::1%lo', type: 'udp6' });
      assert.equal(udp.address().address, '::1');
      const arrived = new Promise<string>((resolve) => udp.once('message', (m) => resolve(m.toString())));
      const sender = dgram.createSocket('udp6');
      await new Promise<void>((resolve, reject) => sender.send('scoped', udp.address().port, '::1', (e) => (e ? reject(e) : resolve())));
      assert.equal(await arrived, 'scoped');
      await closeDgram(sender);
      await closeDgram(udp);
    });

    it('a scope naming no interface is ERR_INVALID_ARG_VALUE naming options.host; nothing stays open', async () => {
      const before = openFds();
      for (const host of ['::1%nosuch0', 'fe80::1%nosuch0', '::1%0']) {
        const e1 = await failure(listenReusePort({ port: 0, host }));
        assert.ok(e1 instanceof TypeError, `${host}: ${String(e1)}`);
        assert.equal(e1.code, 'ERR_INVALID_ARG_VALUE');
        assert.equal(e1.message, `The argument 'options.host' names a network interface that does not exist (ENODEV). Received '${host}'`);
        const e2 = await failure(bindReusePort({ port: 0, host, type: 'udp6' }));
        assert.equal(e2.code, 'ERR_INVALID_ARG_VALUE', host);
      }
      await settle();
      assert.deepEqual(openFds(), before);
    });
  });

  describe('ports held without SO_REUSEPORT, hosts of the other family', () => {
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
});
