// npm run bench:handoff — zero-downtime restarts under load, measured with wrk.
// For each method (fdpass hand-off, naive close-and-bind, Node cluster rolling restart) it runs wrk
// (new connection per request: Connection: close, 64 connections) for DURATION seconds twice: once with
// HANDOFFS restarts spread over the run, once without (the method's own control). Prints a table and
// one RESULT line per method.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { deploy, type Method } from '../examples/restarts';

const DURATION = Number(process.env.DURATION ?? 30);
const HANDOFFS = Number(process.env.HANDOFFS ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);

interface WrkResult {
  requests: number;
  socketErrors: number;
  non2xx: number;
  rps: number;
  detail: string;
}

function ensureWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (err) {
    // wrk --version exits 1 but exists; ENOENT means it is missing.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return;
    console.log('installing wrk from Debian...');
    execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk'], { stdio: 'inherit' });
  }
}

function parseWrk(out: string): WrkResult {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1).map(Number).reduce((a, b) => a + b, 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return { requests, rps, socketErrors, non2xx, detail: se ? se[0] : 'Socket errors: none' };
}

function wrk(port: number, seconds: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const p = spawn('wrk', ['-t2', `-c${CONNECTIONS}`, `-d${seconds}s`, '-H', 'Connection: close', `http://127.0.0.1:${port}/`]);
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', () => resolve(parseWrk(out)));
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

async function measure(method: Method, restarts: number): Promise<{ result: WrkResult; done: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-'));
  const port = await freePort();
  const d = await deploy(method, port, path.join(dir, 'control.sock'));
  const load = wrk(port, DURATION);
  let done = 0;
  const interval = (DURATION * 1000) / (restarts + 1);
  for (let i = 0; i < restarts; i++) {
    await new Promise((r) => setTimeout(r, interval));
    await d.restart();
    done++;
  }
  const result = await load;
  await d.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  return { result, done };
}

async function main(): Promise<void> {
  ensureWrk();
  console.log(`wrk: ${CONNECTIONS} connections, Connection: close, ${DURATION} s per run, ${HANDOFFS} restarts; ${os.cpus().length} cores, Node ${process.version}, Linux ${os.release()}\n`);
  const rows: string[] = [];
  const results: string[] = [];
  for (const method of ['fdpass', 'naive', 'cluster'] as const) {
    const control = await measure(method, 0);
    const run = await measure(method, HANDOFFS);
    const r = run.result;
    const ratio = r.requests / control.result.requests;
    rows.push(
      `${method.padEnd(8)} ${String(run.done).padStart(8)} ${String(r.requests).padStart(9)} ${String(r.socketErrors).padStart(7)} ${String(r.non2xx).padStart(7)} ${r.rps.toFixed(0).padStart(8)} ${control.result.rps.toFixed(0).padStart(9)} ${(ratio * 100).toFixed(1).padStart(7)}%   ${r.detail}`,
    );
    results.push(`RESULT impl=${method} handoffs=${run.done} requests=${r.requests} errors=${r.socketErrors} non2xx=${r.non2xx} control_requests=${control.result.requests}`);
    console.log(`${method}: done`);
  }
  console.log(`\nmethod   restarts  requests  errors  non2xx    req/s  control/s  vs ctrl`);
  for (const row of rows) console.log(row);
  console.log('');
  for (const line of results) console.log(line);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
