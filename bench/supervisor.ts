// npm run bench:supervisor — zero-downtime reloads of one unmodified-protocol app
// (bench/apps/reload-app.ts), three ways, under wrk:
//   fdpass-run   `fdpass run -l http=127.0.0.1:PORT -- node reload-app.js`; reload: SIGHUP, done when
//                the supervisor logs "reload done"
//   pm2          PM2's cluster mode (`pm2 start reload-app.js -i 2 --wait-ready`); reload: `pm2 reload`
//   kill-start   nodemon-style: SIGTERM the app, wait for its exit, start it again
//   fdpass-run-overlap  the same with `--overlap OVERLAP` (s, default 1): the old generation serves next
//                to the ready new one for that long before its SIGTERM, while the new one warms up
//   fdpass-run-2w  `fdpass run --workers 2` (SOCKETS: --sockets, default fdpass run's), beside PM2's
//                cluster of 2; fdpass-run-2w-overlap the same with `--overlap OVERLAP`
// each with a new connection per request (Connection: close) and with keep-alive, at each reload rate
// of RATES. For each it runs REPS interleaved pairs (control without reloads, run with the reloads
// spread evenly over the run).
// Knobs: RATES (RELOADS/SECONDS,..., default 10/15,10/120: a stress rate, a reload every 1.4 s, and a
// realistic one, every 11 s; DURATION and RELOADS, if set, give one rate instead), CONNECTIONS (64),
// REPS (3), METHODS (fdpass-run,fdpass-run-overlap,pm2,kill-start), MODES (close,keepalive), OVERLAP.
// Installs wrk from Debian when missing; PM2 is a devDependency.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ensureTool, median, underRestarts, wrk, type LoadResult, type Restartable } from './load';

function parseRates(): Array<{ reloads: number; seconds: number }> {
  const text =
    process.env.DURATION !== undefined || process.env.RELOADS !== undefined
      ? `${process.env.RELOADS ?? 10}/${process.env.DURATION ?? 15}`
      : (process.env.RATES ?? '10/15,10/120');
  return text.split(',').map((r) => {
    const m = /^(\d+)\/(\d+)$/.exec(r.trim());
    if (!m || Number(m[2]) === 0) throw new Error(`RATES: '${r}' is not RELOADS/SECONDS`);
    return { reloads: Number(m[1]), seconds: Number(m[2]) };
  });
}
const RATES = parseRates();
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const REPS = Number(process.env.REPS ?? 3);
const METHODS = (process.env.METHODS ?? 'fdpass-run,fdpass-run-overlap,fdpass-run-2w,pm2,kill-start').split(',');
const SOCKETS = process.env.SOCKETS === undefined ? [] : ['--sockets', process.env.SOCKETS];
const MODES = (process.env.MODES ?? 'close,keepalive').split(',');
const OVERLAP = process.env.OVERLAP ?? '1';
const ROOT = path.join(__dirname, '..', '..');
const APP = path.join(ROOT, '.bench-out', 'bench', 'apps', 'reload-app.js');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const PM2 = path.join(ROOT, 'node_modules', '.bin', 'pm2');

function exited(p: ChildProcess): Promise<void> {
  return p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((resolve) => p.once('exit', () => resolve()));
}

// Resolves when a line of `stream` matches `re` (bounded).
function line(stream: NodeJS.ReadableStream, re: RegExp, ms = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: stream });
    const timer = setTimeout(() => {
      rl.close();
      reject(new Error(`no line matching ${re} within ${ms} ms`));
    }, ms);
    rl.on('line', (l) => {
      if (!re.test(l)) return;
      clearTimeout(timer);
      rl.close();
      resolve();
    });
  });
}

async function deploy(method: string, port: number, dir: string): Promise<Restartable> {
  if (method.startsWith('fdpass-run')) {
    const options = {
      'fdpass-run': [],
      'fdpass-run-overlap': ['--overlap', OVERLAP],
      'fdpass-run-2w': ['--workers', '2', ...SOCKETS],
      'fdpass-run-2w-overlap': ['--workers', '2', ...SOCKETS, '--overlap', OVERLAP],
    }[method];
    if (options === undefined) throw new Error(`METHODS: unknown method '${method}'`);
    const sup = spawn(process.execPath, [CLI, 'run', '-l', `http=127.0.0.1:${port}`, ...options, '--', process.execPath, APP], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = ''; // its last lines, for an error
    sup.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-3000)));
    await line(
      sup.stderr!,
      method.startsWith('fdpass-run-2w') ? /generation 1 \(2 workers\): all 2 workers ready/ : /generation 1 .*is ready/,
    );
    return {
      async restart() {
        const done = line(sup.stderr!, /reload done/);
        sup.kill('SIGHUP');
        await done.catch((err: Error) => {
          throw new Error(`${err.message}; fdpass run's log ends:\n${log}`);
        });
      },
      async stop() {
        sup.kill('SIGTERM');
        await exited(sup);
      },
    };
  }
  if (method === 'pm2') {
    const env = { ...process.env, PM2_HOME: path.join(dir, 'pm2'), PORT: String(port) };
    const pm2 = (...args: string[]): void => void execFileSync(PM2, args, { env, stdio: 'ignore' });
    pm2('start', APP, '-i', '2', '--name', 'bench', '--wait-ready', '--listen-timeout', '10000', '--kill-timeout', '12000');
    return {
      async restart() {
        pm2('reload', 'bench'); // returns once every worker was replaced
      },
      async stop() {
        pm2('kill');
      },
    };
  }
  let app = spawn(process.execPath, [APP], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PORT: String(port) } });
  await line(app.stdout!, /"serving"/);
  return {
    async restart() {
      app.kill('SIGTERM');
      await exited(app);
      app = spawn(process.execPath, [APP], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PORT: String(port) } });
      await line(app.stdout!, /"serving"/);
    },
    async stop() {
      app.kill('SIGTERM');
      await exited(app);
    },
  };
}

function measure(method: string, keepAlive: boolean, reloads: number, seconds: number): Promise<{ result: LoadResult; done: number }> {
  return underRestarts(
    (port, dir) => deploy(method, port, dir),
    (port) => wrk(`http://127.0.0.1:${port}/`, { connections: CONNECTIONS, seconds, keepAlive }),
    reloads,
    seconds,
  );
}

// REPS interleaved (control, reloads) pairs of one method and mode at one rate: one table row.
async function pairs(method: string, mode: string, { reloads: RELOADS, seconds }: { reloads: number; seconds: number }): Promise<string> {
  const rate = `${RELOADS} in ${seconds} s`;
  const keepAlive = mode === 'keepalive';
  const runs: LoadResult[] = [];
  const ratios: number[] = [];
  const controls: LoadResult[] = [];
  let reloads = 0;
  for (let rep = 0; rep < REPS; rep++) {
    const first = rep % 2 === 0 ? 0 : RELOADS; // alternate which of the pair goes first
    const a = await measure(method, keepAlive, first, seconds);
    const b = await measure(method, keepAlive, RELOADS - first, seconds);
    const [control, run] = first === 0 ? [a, b] : [b, a];
    runs.push(run.result);
    controls.push(control.result);
    ratios.push(run.result.requests / control.result.requests);
    reloads += run.done;
    console.log(
      `${rate}: ${method} ${mode} pair ${rep + 1}/${REPS}: ${run.result.requests} requests, ${run.result.errors} errors, ${run.result.non2xx} non-2xx, p99 ${run.result.p99.toFixed(1)} ms (control ${control.result.p99.toFixed(1)} ms), ${(ratios.at(-1)! * 100).toFixed(1)}% of control (${run.result.detail})`,
    );
  }
  const errors = runs.reduce((x, r) => x + r.errors, 0);
  const non2xx = runs.reduce((x, r) => x + r.non2xx, 0);
  return `| ${rate} | ${method} | ${mode} | ${reloads} | ${median(runs.map((r) => r.requests))} | ${errors} | ${non2xx} | ${(median(ratios) * 100).toFixed(1)} % | ${median(runs.map((r) => r.p99)).toFixed(1)} ms | ${median(controls.map((r) => r.p99)).toFixed(1)} ms |`;
}

async function main(): Promise<void> {
  ensureTool('wrk', ['--version'], 'wrk');
  if (!fs.existsSync(APP) || !fs.existsSync(CLI)) throw new Error('build first: npm run bench:supervisor compiles lib/ and bench/');
  const rates = RATES.map((r) => `${r.reloads} reloads in ${r.seconds} s`).join(', ');
  console.log(
    `${CONNECTIONS} connections; ${rates}; ${REPS} interleaved (control, reloads) pairs; --overlap ${OVERLAP} for fdpass-run-overlap; ${os.cpus().length} cores, Node ${process.version}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  const rows: string[] = [];
  for (const rate of RATES) {
    for (const method of METHODS) {
      for (const mode of MODES) rows.push(await pairs(method, mode, rate));
    }
  }
  console.log('\n| reload rate | method | clients | reloads | requests | errors | non-2xx | vs control | p99 | control p99 |');
  console.log('|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|');
  for (const r of rows) console.log(r);
  console.log(`(requests, "vs control" and p99: medians over ${REPS} pairs; errors and non-2xx: totals over the runs with reloads)`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
