// npm run demo: (1) a listening socket passed between two unrelated processes, both serving, then
// the receiver alone; (2) hot restart under load: five restarts with fdpass's hand-off next to the
// naive close-and-bind restart, a new connection per request throughout, every failure counted.
// The fdpass side runs hot-restart-server.js; the naive side runs this file as `demo.js naive-server <port>`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

type Method = 'fdpass' | 'naive';

// The naive restart's server: the old process closes its listener and exits, then the new one binds
// the port. Connections arriving in between are refused.
function naiveServer(port: number): void {
  const server = http.createServer((_req, res) => res.end(`hello from ${process.pid}\n`));
  const bind = (): void => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRINUSE') throw err;
      setTimeout(bind, 5); // the old process has not let go yet
    });
    server.listen(port, () => console.log(`serving on port ${port} as pid ${process.pid}`));
  };
  bind();
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
}

// Runs `node ...args` and resolves once it says it serves (its line "serving on port ...").
function startServer(args: string[]): Promise<Proc> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return new Promise((resolve, reject) => {
    readline
      .createInterface({ input: child.stdout! })
      .on('line', (line) => {
        if (line.startsWith('serving')) resolve({ child, exited });
      })
      .on('close', () => reject(new Error(`${path.basename(args[0]!)} (pid ${child.pid}) exited before serving`)));
  });
}

// fdpass: the new process starts beside the old one, which hands the listener over, drains and exits
// by itself. naive: the old process is stopped first, then the new one binds the port.
async function deploy(method: Method, port: number, control: string): Promise<{ restart(): Promise<void>; stop(): Promise<void> }> {
  const args =
    method === 'fdpass'
      ? [path.join(__dirname, 'hot-restart-server.js'), String(port), control]
      : [__filename, 'naive-server', String(port)];
  let current = await startServer(args);
  const retired: Promise<void>[] = [];
  return {
    async restart() {
      if (method === 'naive') {
        current.child.kill('SIGTERM');
        await current.exited;
      } else retired.push(current.exited);
      current = await startServer(args);
    },
    async stop() {
      current.child.kill('SIGTERM');
      await Promise.all([current.exited, ...retired]);
    },
  };
}

function get(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function underLoad(method: Method, restarts: number): Promise<{ ok: number; failed: Map<string, number>; seconds: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-demo-'));
  const port = await freePort();
  const d = await deploy(method, port, path.join(dir, 'control.sock'));
  let ok = 0;
  const failed = new Map<string, number>();
  let running = true;
  const client = async (): Promise<void> => {
    while (running) {
      try {
        await get(port);
        ok++;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        failed.set(code, (failed.get(code) ?? 0) + 1);
      }
    }
  };
  const started = Date.now();
  const clients = Array.from({ length: 16 }, client);
  for (let i = 0; i < restarts; i++) {
    await new Promise((r) => setTimeout(r, 400));
    await d.restart();
  }
  await new Promise((r) => setTimeout(r, 400));
  running = false;
  await Promise.all(clients);
  const seconds = (Date.now() - started) / 1000;
  await d.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  return { ok, failed, seconds };
}

async function main(): Promise<void> {
  console.log('Part 1: pass a listening socket to an unrelated process\n');
  const part1 = spawnSync(process.execPath, [path.join(__dirname, 'pass-listener.js')], { stdio: 'inherit' });
  if (part1.status !== 0) process.exitCode = 1;

  console.log('\nPart 2: hot restart under load (16 clients, a new connection per request, 5 restarts)\n');
  let fdpassFailed = 0;
  for (const method of ['fdpass', 'naive'] as const) {
    const r = await underLoad(method, 5);
    const failures = [...r.failed.values()].reduce((a, b) => a + b, 0);
    if (method === 'fdpass') fdpassFailed = failures;
    const detail = failures ? ` (${[...r.failed].map(([c, n]) => `${c} ${n}`).join(', ')})` : '';
    const label = method === 'fdpass' ? 'fdpass hand-off' : 'naive close + bind';
    const rate = `${Math.round(r.ok / r.seconds)} req/s over ${r.seconds.toFixed(1)} s`;
    console.log(`  ${label.padEnd(20)} ${String(r.ok).padStart(6)} requests served (${rate}), ${failures} failed${detail}`);
  }
  if (fdpassFailed > 0) process.exitCode = 1;
}

if (process.argv[2] === 'naive-server') naiveServer(Number(process.argv[3]));
else
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
