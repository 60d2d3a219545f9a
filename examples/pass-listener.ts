// Part 1 of npm run demo: process A listens on a TCP port and serves; it hands the listening socket to an
// unrelated process B over a Unix socket; both serve in turn; A closes; B serves alone. A client
// makes a new connection per request throughout and prints who served each one, and any failure.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { recvFd, sendFd, toServer } from 'fdpass';

const role = process.argv[2] ?? 'main';

function say(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function serve(name: string): http.Server {
  return http.createServer((_req, res) => {
    res.setHeader('connection', 'close');
    res.end(`${name} (pid ${process.pid})`);
  });
}

async function processA(): Promise<void> {
  const server = serve('A');
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  say({ event: 'listening', port: (server.address() as { port: number }).port });
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { cmd: string; path?: string };
    if (cmd.cmd === 'hand-off') {
      await sendFd(cmd.path!, server, 'the http listener');
      say({ event: 'sent' });
    } else if (cmd.cmd === 'close') {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      say({ event: 'closed' });
      break;
    }
  }
}

async function processB(socketPath: string): Promise<void> {
  const received = recvFd(socketPath);
  say({ event: 'waiting' });
  const { fd, data } = await received;
  const server = await toServer(fd, serve('B'));
  say({ event: 'serving', data: data.toString() });
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if ((JSON.parse(line) as { cmd: string }).cmd === 'close') break;
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

interface Child {
  proc: ChildProcess;
  next(event: string): Promise<Record<string, unknown>>;
  send(cmd: Record<string, unknown>): void;
}

function start(args: string[]): Child {
  // No fork, no IPC channel, no inherited descriptors: the processes share nothing but a socket path.
  const proc = spawn(process.execPath, [__filename, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  return {
    proc,
    async next(event) {
      for (;;) {
        const r = await lines.next();
        if (r.done) throw new Error(`process ${proc.pid} ended before '${event}'`);
        const msg = JSON.parse(r.value) as Record<string, unknown>;
        if (msg.event === event) return msg;
      }
    },
    send: (cmd) => proc.stdin!.write(`${JSON.stringify(cmd)}\n`),
  };
}

function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

const totals = { ok: 0, failed: 0 };

async function phase(title: string, port: number, requests: number): Promise<void> {
  const served = new Map<string, number>();
  // A few requests at a time, each on a new connection, so both holders of the listener get a turn.
  for (let i = 0; i < requests; i += 4) {
    const batch = await Promise.allSettled([0, 1, 2, 3].map(() => get(port)));
    for (const r of batch) {
      if (r.status === 'fulfilled') {
        totals.ok++;
        const who = r.value.split(' ')[0]!;
        served.set(who, (served.get(who) ?? 0) + 1);
      } else {
        totals.failed++;
        console.log(`    FAILED: ${(r.reason as Error).message}`);
      }
    }
  }
  const summary = [...served].map(([who, n]) => `${who} served ${n}`).join(', ');
  console.log(`  ${title.padEnd(44)} ${summary}`);
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-demo-'));
  const socketPath = path.join(dir, 'handoff.sock');
  const a = start(['a']);
  const { port } = (await a.next('listening')) as { port: number };
  console.log(`Process A (pid ${a.proc.pid}) listens on 127.0.0.1:${port}.`);
  await phase('1. A alone', port, 40);

  const b = start(['b', socketPath]);
  await b.next('waiting');
  console.log(`Process B (pid ${b.proc.pid}) started on its own (no fork, no IPC) and waits on ${socketPath}.`);
  a.send({ cmd: 'hand-off', path: socketPath });
  await a.next('sent');
  await b.next('serving');
  console.log('A passed its listening socket to B over the Unix socket; B adopted it into an http.Server.');
  await phase('2. both hold the same listener', port, 200);

  a.send({ cmd: 'close' });
  const during = phase('3. A closes its copy (during this load)', port, 120);
  await a.next('closed');
  await during;
  await phase('4. B alone', port, 40);

  b.send({ cmd: 'close' });
  for (const c of [a, b]) c.proc.stdin!.end();
  await Promise.all([a, b].map((c) => new Promise((r) => (c.proc.exitCode !== null ? r(null) : c.proc.once('exit', r)))));
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`\n${totals.ok} requests served, ${totals.failed} failed.`);
  if (totals.failed > 0) process.exitCode = 1;
}

const run = role === 'a' ? processA() : role === 'b' ? processB(process.argv[3]!) : main();
run.catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
