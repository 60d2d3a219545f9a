// npm run bench:migrate — hand-offs that move keep-alive connections (serve's migrate) against hand-offs
// that drain them: wrk (CONNECTIONS keep-alive connections, default 64) for DURATION s (60) against
// examples/hot-restart-server.ts, HANDOFFS (10) generations started GAP ms (1000) after the previous
// one has exited, so that all of them happen under load; then a control run without hand-offs. With
// MIGRATE=1 each old generation reports where its connections went ({ migrated, failed, drained }):
// wrk opens a connection again only when one is closed, so the connections clients opened during the
// run are CONNECTIONS plus every drained or failed one. Prints one JSON line per run.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { ensureTool, freePort, wrk, type LoadResult } from './load';

const ROOT = path.join(__dirname, '..', '..');
const SERVER = path.join(ROOT, '.bench-out', 'examples', 'hot-restart-server.js'); // compiled with the bench
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const SECONDS = Number(process.env.DURATION ?? 60);
const HANDOFFS = Number(process.env.HANDOFFS ?? 10);
const GAP = Number(process.env.GAP ?? 1000);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Counts {
  migrated: number;
  failed: number;
  drained: number;
}

interface Generation {
  child: ChildProcess;
  /** Resolves with the first line whose event is `name`. */
  wait(name: string): Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

function start(port: number, control: string, migrate: boolean): Generation {
  const child = spawn(process.execPath, [SERVER, String(port), control], {
    env: { ...process.env, MIGRATE: migrate ? '1' : '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const events: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as Record<string, unknown>);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    async wait(name) {
      for (;;) {
        const e = events.find((x) => x.event === name);
        if (e) return e;
        await Promise.race([
          new Promise<void>((r) => waiters.push(r)),
          exited.then(() => Promise.reject(new Error(`exited before '${name}'`))),
        ]);
      }
    },
    exited,
  };
}

async function run(migrate: boolean, handoffs: number): Promise<void> {
  const port = await freePort();
  const control = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-migrate-')), 'control.sock');
  let current = start(port, control, migrate);
  await current.wait('serving');
  const load: Promise<LoadResult> = wrk(`http://127.0.0.1:${port}/`, { connections: CONNECTIONS, seconds: SECONDS, keepAlive: true });
  const counts: Counts[] = [];
  let done = 0;
  for (let i = 0; i < handoffs; i++) {
    await sleep(GAP);
    const next = start(port, control, migrate);
    await next.wait('serving');
    const old = current;
    current = next;
    if (migrate) counts.push((await old.wait('drained')).counts as Counts);
    await old.exited;
    done++;
  }
  const result = await load;
  current.child.kill('SIGTERM');
  await current.exited;
  fs.rmSync(path.dirname(control), { recursive: true, force: true });
  const sum = (k: keyof Counts): number => counts.reduce((a, c) => a + c[k], 0);
  const line = {
    run: handoffs === 0 ? 'control' : migrate ? 'migrate' : 'drain',
    handoffs: done,
    rps: Math.round(result.rps),
    p99ms: result.p99,
    errors: result.errors,
    non2xx: result.non2xx,
    ...(migrate && handoffs > 0
      ? { migrated: sum('migrated'), failed: sum('failed'), drained: sum('drained'), opened: CONNECTIONS + sum('failed') + sum('drained') }
      : {}),
  };
  console.log(JSON.stringify(line));
}

async function main(): Promise<void> {
  ensureTool('wrk', ['--version'], 'wrk');
  await run(true, HANDOFFS);
  await run(false, HANDOFFS);
  await run(true, 0);
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
