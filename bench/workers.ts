// npm run bench:workers — how evenly `fdpass run --workers N` spreads load over its workers, for each
// --sockets mode: N workers of bench/apps/reload-app.ts under wrk (CONNECTIONS, default 64, keep-alive
// and a new connection per request) for DURATION s (20); each worker reports how many requests it served
// when stopped. Prints max/min requests per worker (1.0: perfectly even), REPS (3) interleaved runs;
// then the supervisor's and the workers' RSS at WORKERS=4 (from `fdpass status --json`).
// Knobs: WORKERS (2), CONNECTIONS, DURATION, REPS, MODES (keepalive,close), SOCKETS (shared,per-worker).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ensureTool, freePort, median, wrk } from './load';

const ROOT = path.join(__dirname, '..', '..');
const APP = path.join(ROOT, '.bench-out', 'bench', 'apps', 'reload-app.js');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const WORKERS = Number(process.env.WORKERS ?? 2);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const SECONDS = Number(process.env.DURATION ?? 20);
const REPS = Number(process.env.REPS ?? 3);
const MODES = (process.env.MODES ?? 'keepalive,close').split(',');
const SOCKETS = (process.env.SOCKETS ?? 'shared,per-worker').split(',');

interface Supervised {
  stop(): Promise<number[]>;
  control: string;
}

async function supervise(workers: number, sockets: string, port: number, dir: string): Promise<Supervised> {
  const control = path.join(dir, `ctl-${port}`);
  const sup = spawn(
    process.execPath,
    [
      CLI,
      'run',
      '-n',
      String(workers),
      '--sockets',
      sockets,
      '-l',
      `http=127.0.0.1:${port}`,
      '--control',
      control,
      '--',
      process.execPath,
      APP,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WARM_UP: '0' } },
  );
  const served: number[] = [];
  readline.createInterface({ input: sup.stdout! }).on('line', (l) => {
    const m = JSON.parse(l) as { event: string; served?: number };
    if (m.event === 'stopped') served.push(m.served!);
  });
  let log = '';
  let ready = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready:\n${log}`)), 30_000);
    sup.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      ready = (log.match(/is ready/g) ?? []).length;
      if (ready >= workers) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return {
    control,
    async stop() {
      sup.kill('SIGTERM');
      await new Promise((r) => sup.once('exit', r));
      return served;
    },
  };
}

async function main(): Promise<void> {
  ensureTool('wrk', ['--version'], 'wrk');
  if (!fs.existsSync(APP) || !fs.existsSync(CLI)) throw new Error('build first: npm run bench:workers compiles lib/ and bench/');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-workers-'));
  console.log(
    `${WORKERS} workers, ${CONNECTIONS} connections, ${SECONDS} s, ${REPS} interleaved runs; ${os.availableParallelism()} CPUs, Node ${process.version}\n`,
  );
  const rows: string[] = [];
  try {
    for (const mode of MODES) {
      const spreads = new Map<string, number[]>(SOCKETS.map((s) => [s, []]));
      const rps = new Map<string, number[]>(SOCKETS.map((s) => [s, []]));
      for (let rep = 0; rep < REPS; rep++) {
        const order = rep % 2 === 0 ? SOCKETS : [...SOCKETS].reverse();
        for (const sockets of order) {
          const port = await freePort();
          const sup = await supervise(WORKERS, sockets, port, dir);
          const r = await wrk(`http://127.0.0.1:${port}/`, { connections: CONNECTIONS, seconds: SECONDS, keepAlive: mode === 'keepalive' });
          const served = await sup.stop();
          const spread = served.length < WORKERS ? Infinity : Math.max(...served) / Math.max(1, Math.min(...served));
          spreads.get(sockets)!.push(spread);
          rps.get(sockets)!.push(r.rps);
          console.log(
            `${mode} --sockets ${sockets} run ${rep + 1}: per worker ${served.join(' / ')}, max/min ${spread.toFixed(2)}, ${r.rps.toFixed(0)} req/s, ${r.errors} errors`,
          );
        }
      }
      for (const sockets of SOCKETS) {
        const s = spreads.get(sockets)!;
        rows.push(
          `| ${mode} | ${sockets} | ${median(s).toFixed(2)} | ${Math.min(...s).toFixed(2)}–${Math.max(...s).toFixed(2)} | ${median(rps.get(sockets)!).toFixed(0)} |`,
        );
      }
    }
    console.log(`\n| clients | --sockets | max/min per worker (median) | range | req/s (median) |\n|:--|:--|--:|--:|--:|`);
    for (const r of rows) console.log(r);
    // Memory: the supervisor and its workers at 4 workers, idle after start.
    const port = await freePort();
    const sup = await supervise(4, 'per-worker', port, dir);
    const status = JSON.parse(execFileSync(process.execPath, [CLI, 'status', '--json', sup.control], { encoding: 'utf8' })) as {
      rssBytes: number;
      generations: Array<{ workers: Array<{ rssBytes: number }> }>;
    };
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
    const workers = status.generations[0]!.workers.map((w) => w.rssBytes);
    console.log(`\nRSS with 4 workers: supervisor ${mib(status.rssBytes)}; workers ${workers.map(mib).join(', ')}`);
    await sup.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
