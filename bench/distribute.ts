// Accept and distribute: the servers behind the second workload of `npm run bench`.
//   node distribute.js fdpass <port>     a primary hands TCP connections to two workers (round robin)
//                                        over fdpass seqpacket channels with distribute() (accepted in
//                                        native batches, no net.Socket in the primary); the workers
//                                        adopt each socket and answer HTTP. With a build that has no
//                                        distribute(), as fdpass-socket
//   node distribute.js fdpass-socket <port>  the same with a net.Server in the primary: each connection
//                                        a net.Socket whose fd goes out with write()/writeMany()
//   node distribute.js reuseport <port>  one HTTP worker on a SO_REUSEPORT listener (run two)
// (Node cluster's round robin is bench/apps/cluster-server.ts with 2 workers.)
// Each prints {"event":"serving"} once it serves, and stops on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import * as fdpass from 'fdpass';
import { fdOf, listenReusePort, openChannel, socketPair, toSocket, type Channel, type Message } from 'fdpass';

const WORKERS = 2;

function hasWrite(ch: Channel): ch is Channel & { write(msg: { fds: number[] }): boolean } {
  return typeof (ch as { write?: unknown }).write === 'function';
}

interface BatchWriter {
  writeMany(msgs: Array<{ fds: number[] }>): boolean;
}

function hasWriteMany(ch: Channel): boolean {
  return typeof (ch as { writeMany?: unknown }).writeMany === 'function';
}

function handler(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.end(`hello from ${process.pid}\n`);
}

function serving(): void {
  process.stdout.write(`${JSON.stringify({ event: 'serving', pid: process.pid })}\n`);
}

// A worker: every message carries accepted connections; each becomes a net.Socket of the HTTP server.
function fdpassWorker(): void {
  const server = http.createServer(handler);
  const ch = openChannel(3);
  ch.on('message', (m: Message) => {
    for (const fd of m.fds) server.emit('connection', toSocket(fd));
  });
  ch.on('end', () => process.exit(0));
  ch.on('error', (err) => {
    console.error(err);
    process.exit(1);
  });
}

function startWorkers(): { children: ChildProcess[]; channels: Channel[] } {
  const children: ChildProcess[] = [];
  const channels: Channel[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const [mine, theirs] = socketPair({ type: 'seqpacket' });
    children.push(spawn(process.execPath, [__filename, 'fdpass-worker'], { stdio: ['ignore', 'inherit', 'inherit', theirs.fd] }));
    theirs.destroy();
    mine.on('error', (err) => console.error(err));
    channels.push(mine);
  }
  return { children, channels };
}

function stopOnSigterm(close: () => void, channels: Channel[], children: ChildProcess[]): void {
  process.on('SIGTERM', () => {
    close();
    for (const ch of channels) void ch.close();
    void Promise.all(children.map((c) => once(c, 'exit'))).then(() => process.exit(0));
  });
}

// distribute(): accepted in native batches, each worker's share of a batch in one message.
async function distributePrimary(port: number): Promise<void> {
  const { children, channels } = startWorkers();
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', 511, resolve));
  const distributor = fdpass.distribute(server, channels);
  stopOnSigterm(() => void distributor.close(), channels, children);
  serving();
}

async function socketPrimary(port: number): Promise<void> {
  const { children, channels } = startWorkers();
  let next = 0;
  // With writeMany, the connections accepted in one loop turn go to each worker in one call (libuv
  // emits them one by one): they are collected until setImmediate, which runs right after the poll
  // phase that accepted them, and their sockets stay open until then, so no fd needs a duplicate.
  const batching = channels.every(hasWriteMany);
  const pending = channels.map(() => [] as Array<{ fds: number[] }>);
  const held: net.Socket[] = [];
  const flush = (): void => {
    for (let i = 0; i < WORKERS; i++) {
      const msgs = pending[i]!;
      if (msgs.length === 0) continue;
      try {
        (channels[i] as Channel & BatchWriter).writeMany(msgs); // false only means queued: it still goes out
      } catch (err) {
        console.error(err);
      }
      msgs.length = 0;
    }
    for (const socket of held) socket.destroy();
    held.length = 0;
  };
  // pauseOnConnect: the primary never reads; it only hands the descriptor on and closes its copy.
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    const i = next;
    const ch = channels[i]!;
    next = (next + 1) % WORKERS;
    const msg = { fds: [fdOf(socket)] };
    if (batching) {
      if (held.length === 0) setImmediate(flush);
      pending[i]!.push(msg);
      held.push(socket);
      return;
    }
    // write() where this fdpass has it (no promise per connection), else send().
    if (hasWrite(ch)) {
      try {
        ch.write(msg); // false only means queued: it still goes out
      } catch (err) {
        console.error(err);
      }
    } else {
      ch.send(msg).catch((err) => console.error(err));
    }
    socket.destroy(); // the message holds the fd now (in the kernel, or as a duplicate if queued)
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', 511, resolve));
  stopOnSigterm(() => server.close(), channels, children);
  serving();
}

async function reusePortWorker(port: number): Promise<void> {
  const server = http.createServer(handler);
  await listenReusePort({ port, host: '127.0.0.1', backlog: 511, server });
  process.on('SIGTERM', () => process.exit(0));
  serving();
}

const [role, port] = process.argv.slice(2);
const hasDistribute = typeof (fdpass as { distribute?: unknown }).distribute === 'function';
const run =
  role === 'fdpass' && hasDistribute
    ? distributePrimary(Number(port))
    : role === 'fdpass' || role === 'fdpass-socket'
      ? socketPrimary(Number(port))
      : role === 'fdpass-worker'
        ? Promise.resolve(fdpassWorker())
        : reusePortWorker(Number(port));
run.catch((err) => {
  console.error(err);
  process.exit(1);
});
