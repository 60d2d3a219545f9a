// Descriptors crossing between real processes: listeners, bursts, truncation (SO_REUSEPORT across
// processes: reuseport.test.ts).
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { once } from 'node:events';
import { sendFd, sendFds, listen, closeFd, type Channel } from 'fdpass';
import * as net from 'node:net';
import { runFixture, spawnJson, fixturesDir } from './helpers/children';
import { tmpPath } from './helpers/tmp';
import { whoServes } from './helpers/http';
import * as path from 'node:path';

describe('between processes', () => {
  // Both serve, then the receiver alone.
  it('a listening TCP socket moves to an unrelated process with no refused connection', async () => {
    const sock = tmpPath('handoff.sock');
    const server = http.createServer((_req, res) => {
      res.setHeader('connection', 'close');
      res.end(`A ${process.pid}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;

    // B is spawned without IPC or inherited descriptors: it knows only the socket path.
    const b = runFixture('http-receiver', [sock], { stdio: ['pipe', 'pipe', 'pipe'] });
    await b.expect('waiting');
    await sendFd(sock, server, 'http listener');
    const serving = await b.expect<{ data: string; cloexec: boolean; kind: string; listening: boolean }>('serving');
    assert.equal(serving.data, 'http listener');
    assert.equal(serving.cloexec, true);
    assert.equal(serving.kind, 'socket');
    assert.equal(serving.listening, true);

    // Both hold the listener: both accept in turn.
    const both = { served: new Map<string, number>(), errors: [] as string[] };
    for (let round = 0; round < 10 && !(both.served.get('A') && both.served.get('B')); round++) {
      const r = await whoServes(port, 100, 8);
      for (const [k, v] of r.served) both.served.set(k, (both.served.get(k) ?? 0) + v);
      both.errors.push(...r.errors);
    }
    assert.deepEqual(both.errors, []);
    assert.ok((both.served.get('A') ?? 0) > 0, `A served ${both.served.get('A')}`);
    assert.ok((both.served.get('B') ?? 0) > 0, `B served ${both.served.get('B')}`);

    // A closes its copy while requests keep coming: none may fail.
    const during = whoServes(port, 400, 8);
    await new Promise((r) => setTimeout(r, 20));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const r = await during;
    assert.deepEqual(r.errors, []);
    const after = await whoServes(port, 100, 8);
    assert.deepEqual(after.errors, []);
    assert.deepEqual([...after.served.keys()], ['B']);

    b.send({ cmd: 'close' });
    const closed = await b.expect<{ fdsBefore: number; fdsAfter: number; targetsBefore: unknown; targetsAfter: unknown }>('closed');
    assert.deepEqual(closed.targetsAfter, closed.targetsBefore);
    assert.equal(closed.fdsAfter, closed.fdsBefore, 'the receiver is back to its starting fd count');
    b.proc.stdin!.end();
    assert.deepEqual(await b.exited, { code: 0, signal: null });
  });

  it('a connected TCP socket and a bound UDP socket cross to another process and work there', async () => {
    const sock = tmpPath('sockets.sock');
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const [accepted] = (await once(server, 'connection')) as [net.Socket];
    await once(client, 'connect');
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    const udpPort = udp.address().port;

    const child = runFixture('socket-user', [sock]);
    await child.expect('waiting');
    await sendFds(sock, [client, udp], 'tcp+udp');
    // Our copies go: from now on the child's copies are the only ones.
    client.destroy();
    await new Promise<void>((resolve) => udp.close(() => resolve()));

    accepted.write('ping');
    let echoed = '';
    accepted.on('data', (d: Buffer) => (echoed += d.toString()));
    await once(accepted, 'end');
    assert.equal(echoed, `echo from ${child.pid}: ping`);
    accepted.destroy();

    const probe = dgram.createSocket('udp4');
    probe.send('hello', udpPort, '127.0.0.1');
    const [reply] = (await once(probe, 'message')) as [Buffer];
    assert.equal(reply.toString(), `udp ${child.pid}: hello`);
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const done = await child.expect<{ data: string; kinds: string[]; fdsBefore: number; fdsAfter: number }>('done');
    assert.equal(done.data, 'tcp+udp');
    assert.deepEqual(done.kinds, ['inet stream cloexec=true', 'inet dgram cloexec=true']);
    assert.equal(done.fdsAfter, done.fdsBefore);
    assert.deepEqual(await child.exited, { code: 0, signal: null });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  for (const type of ['seqpacket', 'stream'] as const) {
    it(`${type}: a burst of 10,000 fd-carrying messages sent without awaiting arrives complete`, async () => {
      const sock = tmpPath('burst.sock');
      const server = await listen(sock, { type });
      const sender = runFixture('burst-sender', [sock, '10000', type]);
      const [channel] = (await once(server, 'connection')) as [Channel];
      await server.close();
      let messages = 0;
      let fds = 0;
      let inOrder = true;
      for await (const m of channel) {
        if (m.data.toString() !== `m${messages}`) inOrder = false;
        messages++;
        fds += m.fds.length;
        for (const fd of m.fds) closeFd(fd);
      }
      await channel.close();
      const sent = await sender.expect<{ count: number; fdsBefore: number; fdsAfter: number }>('sent');
      assert.equal(messages, 10000);
      assert.equal(fds, 10000);
      assert.ok(inOrder, 'messages arrive in order');
      assert.equal(sent.fdsAfter, sent.fdsBefore);
      assert.deepEqual(await sender.exited, { code: 0, signal: null });
    });
  }

  it('a receiver with too small a descriptor limit gets ERR_FDPASS_CTRUNC and leaks nothing', async () => {
    const sock = tmpPath('ctrunc.sock');
    const server = await listen(sock);
    const script = path.join(fixturesDir, 'ctrunc-receiver.js');
    const child = spawnJson('/bin/sh', ['-c', `ulimit -n 64 && exec "$0" "$@"`, process.execPath, script, sock]);
    const [channel] = (await once(server, 'connection')) as [Channel];
    await server.close();
    const ready = await child.expect<{ fds: number }>('ready');
    assert.ok(ready.fds < 64);
    const fds = Array.from({ length: 200 }, () => fs.openSync('/dev/null', 'r'));
    await channel.send({ data: 'too many for you', fds });
    await channel.send({ data: 'after', fds: [fds[0]!] });
    for (const fd of fds) fs.closeSync(fd);
    const result = await child.expect<{
      error: { code: string } | null;
      fdsBefore: number;
      fdsAfter: number;
      next: string;
      nextFds: number;
    }>('result');
    assert.equal(result.error?.code, 'ERR_FDPASS_CTRUNC');
    assert.equal(result.next, 'after');
    assert.equal(result.nextFds, 1);
    // fdsAfter counts the one fd of the second message, still held.
    assert.equal(result.fdsAfter, result.fdsBefore + 1);
    await channel.close();
    assert.deepEqual(await child.exited, { code: 0, signal: null });
  });
});
