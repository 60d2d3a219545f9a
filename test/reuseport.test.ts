// SO_REUSEPORT: listenReusePort/bindReusePort share one port between listeners of one process or of
// several, TCP and UDP.
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import { bindReusePort, fdOf, inspect, listenReusePort } from 'fdpass';
import { closeDgram, closeServer, greeter, nextDatagram, portOf, sendDatagram, sock, tcpHello } from './helpers/sockets';
import { get } from './helpers/http';

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

  it('listenReusePort without host listens on every address (dual-stack ::, or 0.0.0.0) and accepts 127.0.0.1', async () => {
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
});
