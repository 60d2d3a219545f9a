// Load generation for the restart benchmarks: wrk (HTTP/1.1, plain or TLS) and h2load (HTTP/2), their
// output parsed into one shape, with each request's latency when asked; the tools installed from
// Debian when missing; medians; the loop that restarts a server under load.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { RestartMark } from './apps/restarts';
import { readH2loadLog, readWrkLog, WRK_SCRIPT, type RequestTimes } from './latency';

export interface LoadResult {
  requests: number;
  errors: number;
  non2xx: number;
  rps: number;
  /** 99th percentile latency in ms (wrk only; NaN otherwise). */
  p99: number;
  detail: string;
  /** Each completed request's start and latency, when asked for with `requestLog`. */
  times?: RequestTimes;
}

export function ensureTool(tool: string, args: string[], pkg: string): void {
  try {
    execFileSync(tool, args, { stdio: 'ignore' });
  } catch (err) {
    // wrk --version exits 1 but exists; ENOENT means it is missing.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return;
    console.log(`installing ${pkg} from Debian...`);
    execFileSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkg}`], { stdio: 'inherit' });
  }
}

function ms(value: string, unit: string): number {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

export function parseWrk(out: string): LoadResult {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = se
    ? se
        .slice(1)
        .map(Number)
        .reduce((a, b) => a + b, 0)
    : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const p = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  return { requests, rps, errors, non2xx, p99: p ? ms(p[1]!, p[2]!) : NaN, detail: se ? se[0] : 'socket errors: none' };
}

export function parseH2load(out: string): LoadResult {
  const r = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  if (!r || !codes) return { requests: NaN, rps: NaN, errors: NaN, non2xx: NaN, p99: NaN, detail: out.slice(-300) };
  const failed = Number(r[5]) + Number(r[6]) + Number(r[7]);
  return {
    requests: Number(r[3]),
    rps,
    errors: failed,
    non2xx: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    p99: NaN,
    detail: r[0],
  };
}

/**
 * Runs wrk (`keepAlive` false: a new connection per request) for `seconds` against `url`. With
 * `requestLog` (a path prefix), it also times each request (bench/latency.lua; the server must echo
 * X-Start) into `times`; the Lua hooks cost wrk some throughput.
 */
export async function wrk(
  url: string,
  opts: { connections: number; seconds: number; keepAlive: boolean; requestLog?: string; rate?: number },
): Promise<LoadResult> {
  if (opts.rate !== undefined && opts.requestLog === undefined) throw new Error('wrk: a paced rate needs the request log script');
  const script = opts.requestLog === undefined ? [] : ['-s', WRK_SCRIPT];
  const args = [
    '-t2',
    `-c${opts.connections}`,
    `-d${opts.seconds}s`,
    '--latency',
    ...script,
    ...(opts.keepAlive ? [] : ['-H', 'Connection: close']),
    url,
  ];
  // Paced: each connection waits a random delay with this mean before each request (bench/latency.lua).
  const env =
    opts.rate === undefined ? undefined : { ...process.env, FDPASS_BENCH_DELAY_MS: String((opts.connections * 1000) / opts.rate) };
  const result = await run('wrk', opts.requestLog === undefined ? args : [...args, opts.requestLog], parseWrk, env);
  return opts.requestLog === undefined ? result : { ...result, times: complete(readWrkLog(opts.requestLog), result, 'wrk') };
}

/** Runs h2load (HTTP/2, one stream at a time per connection) for `seconds` against `url`; with `requestLog` (a file), also each request's latency into `times`. */
export async function h2load(url: string, opts: { connections: number; seconds: number; requestLog?: string }): Promise<LoadResult> {
  const log = opts.requestLog === undefined ? [] : [`--log-file=${opts.requestLog}`];
  const result = await run(
    'h2load',
    ['-c', String(opts.connections), '-t', '2', '-m', '1', '-D', String(opts.seconds), ...log, url],
    parseH2load,
  );
  return opts.requestLog === undefined ? result : { ...result, times: complete(readH2loadLog(opts.requestLog), result, 'h2load') };
}

// A log that misses requests would bias the percentiles: it must hold every one the tool counted.
function complete(times: RequestTimes, result: LoadResult, tool: string): RequestTimes {
  if (times.start.length !== result.requests) {
    throw new Error(`${tool} counted ${result.requests} requests but logged ${times.start.length}`);
  }
  return times;
}

function run(cmd: string, args: string[], parse: (out: string) => LoadResult, env?: NodeJS.ProcessEnv): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, env === undefined ? {} : { env });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', () => resolve(parse(out)));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A server that a benchmark restarts (or reloads) under load. */
export interface Restartable {
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** The restarts' moments, when the server reports them (bench/apps/restarts.ts does). */
  readonly marks?: RestartMark[];
}

/**
 * Deploys a server in a fresh temporary directory, loads it for `seconds` with `load(port, dir)`,
 * restarts it `restarts` times spread evenly over the run (the i-th begins at i/(restarts+1) of it, or
 * when the one before is done if that is later), then stops it and removes the directory.
 */
export async function underRestarts(
  deployIn: (port: number, dir: string) => Promise<Restartable>,
  load: (port: number, dir: string) => Promise<LoadResult>,
  restarts: number,
  seconds: number,
): Promise<{ result: LoadResult; done: number; marks: RestartMark[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-'));
  const port = await freePort();
  const d = await deployIn(port, dir);
  const running = load(port, dir);
  let done = 0;
  // On a fixed schedule from the start: waiting a whole interval after each restart (an fdpass
  // restart takes ~1.3 s) pushed the last ones past the end of the load.
  const interval = (seconds * 1000) / (restarts + 1);
  const start = Date.now();
  for (let i = 0; i < restarts; i++) {
    await new Promise((r) => setTimeout(r, Math.max(0, start + (i + 1) * interval - Date.now())));
    await d.restart();
    done++;
  }
  const result = await running;
  await d.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  return { result, done, marks: [...(d.marks ?? [])] };
}
