// `fdpass run` binding its listeners: it never takes a name or a port someone else is using.
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import { spawnJson, type Fixture } from './helpers/children';
import { APP, logged, stop, stopLeftovers, supervise } from './helpers/fdpass-run';
import { bindUdp, closeDgram, nextDatagram, portOf } from './helpers/sockets';
import { tmpPath } from './helpers/tmp';

// A Unix socket server of another program, in its own process: 'dgram', 'seqpacket', or 'busy' (a
// stream listener with backlog 0 that never accepts, its queue filled until connect says EAGAIN).
// On "probe" it checks that the path still reaches it: a datagram or a connection arrives, or (busy)
// a new connect still finds the queue full.
const PY_SERVER = `
import errno, json, os, socket, sys
kind, path = sys.argv[1], sys.argv[2]
types = {'dgram': socket.SOCK_DGRAM, 'seqpacket': socket.SOCK_SEQPACKET, 'busy': socket.SOCK_STREAM}
srv = socket.socket(socket.AF_UNIX, types[kind])
srv.bind(path)
queued = []
if kind != 'dgram':
    srv.listen(0)
if kind == 'busy':
    while True:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
            queued.append(c)
        except BlockingIOError:
            c.close()
            break
def say(**m):
    print(json.dumps(m), flush=True)
say(event='ready', queued=len(queued))
for line in sys.stdin:
    c = socket.socket(socket.AF_UNIX, types[kind])
    c.setblocking(False)
    try:
        if kind == 'dgram':
            c.sendto(b'probe', path)
            srv.settimeout(5)
            say(event='probe', ok=srv.recv(16) == b'probe')
        elif kind == 'seqpacket':
            c.connect(path)
            srv.settimeout(5)
            srv.accept()[0].close()
            say(event='probe', ok=True)
        else:
            try:
                c.connect(path)
                say(event='probe', ok=False, why='connected')
            except BlockingIOError:
                say(event='probe', ok=True)
    except OSError as e:
        say(event='probe', ok=False, why=str(e))
    c.close()
`;

async function otherServer(kind: 'dgram' | 'seqpacket' | 'busy', path: string): Promise<Fixture> {
  const f = spawnJson('python3', ['-c', PY_SERVER, kind, path]);
  await f.expect('ready');
  return f;
}

describe('fdpass run: listeners it must not take', function () {
  this.timeout(60_000);
  afterEach(stopLeftovers);

  for (const kind of ['dgram', 'seqpacket', 'busy'] as const) {
    const what = { dgram: 'a live datagram server', seqpacket: 'a live seqpacket server', busy: 'a stream server whose backlog is full' }[
      kind
    ];
    it(`a Unix path held by ${what} is EADDRINUSE and keeps its owner`, async () => {
      const sock = tmpPath('app.sock');
      const other = await otherServer(kind, sock);
      const inode = fs.lstatSync(sock).ino;
      const sup = supervise(['-l', `unix:${sock}`], [process.execPath, APP]);
      assert.equal((await sup.exited).code, 1, sup.stderr());
      assert.match(sup.stderr(), /^fdpass: bind EADDRINUSE: address already in use '.*app\.sock'\n$/);
      assert.equal(fs.lstatSync(sock).ino, inode, 'the socket file was replaced');
      other.send('probe');
      assert.deepEqual(await other.expect('probe'), { event: 'probe', ok: true });
      other.proc.stdin!.end();
      assert.equal((await other.exited).code, 0, other.stderr());
      fs.unlinkSync(sock);
    });
  }

  it('a stale socket file (no one bound) is replaced, and removed at exit', async () => {
    const sock = tmpPath('app.sock');
    const other = await otherServer('seqpacket', sock);
    other.proc.kill('SIGKILL'); // leaves its file behind
    await other.exited;
    const sup = supervise(['-l', `unix:${sock}`], [process.execPath, APP]);
    await sup.expect('ready');
    assert.equal(await stop(sup), 0);
    assert.equal(fs.existsSync(sock), false);
  });

  it('a UDP port in use by another program is EADDRINUSE, and the datagrams stay its own', async () => {
    const owner = await bindUdp();
    const port = portOf(owner);
    const sup = supervise(['-l', `udp:127.0.0.1:${port}`], [process.execPath, APP]);
    assert.equal((await sup.exited).code, 1, sup.stderr());
    assert.match(sup.stderr(), new RegExp(`^fdpass: bind EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\\n$`));
    const got = nextDatagram(owner);
    const c = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => c.send('still mine', port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
    await closeDgram(c);
    assert.equal((await got).msg, 'still mine');
    await closeDgram(owner);
  });

  it('the same UDP address listed twice is EADDRINUSE', async () => {
    const probe = await bindUdp();
    const port = portOf(probe);
    await closeDgram(probe);
    const sup = supervise(['-l', `a=udp:127.0.0.1:${port}`, '-l', `b=udp:127.0.0.1:${port}`], [process.execPath, APP]);
    assert.equal((await sup.exited).code, 1, sup.stderr());
    assert.match(sup.stderr(), new RegExp(`^fdpass: bind EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\\n$`));
  });

  it('a second fdpass run on a UDP address in use by the first refuses to start', async () => {
    const probe = await bindUdp();
    const port = portOf(probe);
    await closeDgram(probe);
    const first = supervise(['-l', `http=127.0.0.1:0`, '-l', `udp:127.0.0.1:${port}`], [process.execPath, APP]);
    await first.expect('ready');
    const second = supervise(['-l', `http=127.0.0.1:0`, '-l', `udp:127.0.0.1:${port}`], [process.execPath, APP]);
    assert.equal((await second.exited).code, 1, second.stderr());
    assert.match(second.stderr(), /EADDRINUSE/);
    await logged(first, /is ready/);
    assert.equal(await stop(first), 0);
  });
});
