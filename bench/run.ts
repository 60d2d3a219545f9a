// npm run bench — fdpass against Node's own handle passing and against the kernel's limit.
//  1. The fd round trip (rt-fdpass, rt-node, fdloop.c one syscall per message and fdloop.c mmsg, 32
//     messages per sendmmsg/recvmmsg): N messages of 8 bytes, each with K copies of one
//     listening TCP socket, from a sender process to a receiver process that closes every fd and
//     acknowledges the end; K = 1, 64, 253 on seqpacket and stream. Each (implementation, socket type, K)
//     gets an N calibrated to take about TARGET seconds, then REPS repetitions run interleaved and the
//     median counts.
//  2. The soak: 1,000,000 messages through one fdpass channel; RSS and fd count after the first
//     100,000 and at the end, on both sides.
//  3. Accept and distribute: HTTP under wrk (new connection per request) through an fdpass primary
//     handing connections to 2 workers, Node cluster round robin with 2 workers, and 2 workers sharing
//     the port with SO_REUSEPORT (listenReusePort).
// Environment: REPS (5), TARGET (1 s), SOAK (1000000), HTTP_REPS (3), HTTP_SECONDS (5),
// CONNECTIONS (64), ONLY (roundtrip|soak|http: run one part), FDPASS_API (best: the fastest API the
// installed fdpass offers; baseline: the 0.1.0 API, `await send()` and `closeFd` per fd).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

const REPS = Number(process.env.REPS ?? 5);
const TARGET = Number(process.env.TARGET ?? 1);
const SOAK = Number(process.env.SOAK ?? 1_000_000);
const HTTP_REPS = Number(process.env.HTTP_REPS ?? 3);
const HTTP_SECONDS = Number(process.env.HTTP_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const ONLY = process.env.ONLY;

const OUT = path.join(__dirname, '..'); // .bench-out
const ROOT = path.join(OUT, '..');
const FDLOOP = path.join(OUT, 'fdloop');

type Impl = 'fdpass' | 'c-epoll' | 'c-mmsg' | 'node-core';
type SockType = 'seqpacket' | 'stream';

interface Run {
  elapsed_ns: number;
  sender_maxrss_kb: number;
  receiver_maxrss_kb: number;
  mode?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function runJson(cmd: string, args: string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${path.basename(args[0] ?? cmd)} ${args.slice(1).join(' ')}: ${err.message}\n${stderr}`));
      const line = stdout.trim().split('\n').pop() ?? '';
      resolve(JSON.parse(line) as Run);
    });
  });
}

function runOnce(impl: Impl, type: SockType, k: number, n: number): Promise<Run> {
  switch (impl) {
    case 'c-epoll':
      return runJson(FDLOOP, [type, String(k), String(n)]);
    case 'c-mmsg':
      return runJson(FDLOOP, [type, String(k), String(n), 'mmsg']);
    case 'fdpass':
      return runJson(process.execPath, [
        path.join(__dirname, 'rt-fdpass.js'),
        type,
        String(k),
        String(n),
        process.env.FDPASS_API ?? 'best',
      ]);
    case 'node-core':
      return runJson(process.execPath, [path.join(__dirname, 'rt-node.js'), String(k), String(n)]);
  }
}

// Two significant digits, at least `min`.
function roundN(x: number, min: number): number {
  if (x <= min) return min;
  const p = 10 ** Math.max(0, Math.floor(Math.log10(x)) - 1);
  return Math.max(min, Math.round(x / p) * p);
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(0)}k`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}

function compileC(): void {
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', FDLOOP, path.join(ROOT, 'bench', 'fdloop.c')], { stdio: 'inherit' });
}

interface Cell {
  impl: Impl;
  type: SockType;
  k: number;
  n: number;
  times: number[];
  rss: number[];
  mode?: string;
}

async function roundTrip(): Promise<void> {
  const ks = [1, 64, 253];
  const types: SockType[] = ['seqpacket', 'stream'];
  const cells: Cell[] = [];
  for (const type of types) {
    for (const k of ks) {
      cells.push({ impl: 'c-epoll', type, k, n: 0, times: [], rss: [] });
      cells.push({ impl: 'c-mmsg', type, k, n: 0, times: [], rss: [] });
      cells.push({ impl: 'fdpass', type, k, n: 0, times: [], rss: [] });
      // Node's IPC channel is always a stream socket: one node-core measurement per K serves both rows.
      if (type === 'stream') cells.push({ impl: 'node-core', type, k, n: 0, times: [], rss: [] });
    }
  }
  // Calibration: N for about TARGET seconds, from a first guess, refined until the probe itself ran
  // long enough (a short probe is mostly process start-up and JIT warm-up and underestimates N).
  for (const c of cells) {
    let n = c.impl === 'node-core' ? Math.max(2, Math.ceil(500 / c.k)) : Math.max(200, Math.ceil(20_000 / c.k));
    for (let probe = 0; probe < 4; probe++) {
      const r = await runOnce(c.impl, c.type, c.k, n);
      const seconds = r.elapsed_ns / 1e9;
      const next = roundN((n / seconds) * TARGET, c.impl === 'node-core' ? 2 : 100);
      if (seconds >= TARGET / 3 || next <= n) {
        n = next;
        break;
      }
      n = Math.min(next, n * 8);
    }
    c.n = n;
  }
  console.log(`round trip: ${REPS} interleaved repetitions of ${cells.length} measurements (N calibrated to ~${TARGET} s each)`);
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of cells) {
      const r = await runOnce(c.impl, c.type, c.k, c.n);
      c.times.push(r.elapsed_ns / 1e9);
      c.rss.push(Math.max(r.sender_maxrss_kb, r.receiver_maxrss_kb));
      if (r.mode !== undefined) c.mode = r.mode;
    }
    process.stdout.write(`  repetition ${rep + 1}/${REPS} done\n`);
  }

  const rate = (c: Cell | undefined): number => (c ? c.n / median(c.times) : NaN);
  const spread = (c: Cell): string => {
    const rates = c.times.map((t) => c.n / t);
    return `±${(((Math.max(...rates) - Math.min(...rates)) / 2 / rate(c)) * 100).toFixed(0)}%`;
  };
  const find = (impl: Impl, type: SockType, k: number): Cell | undefined =>
    cells.find((c) => c.impl === impl && c.type === type && c.k === k) ??
    (impl === 'node-core' ? cells.find((c) => c.impl === impl && c.k === k) : undefined);

  const fdpassMode = cells.find((c) => c.impl === 'fdpass')?.mode ?? '?';
  console.log(`\nfd round trip (medians of ${REPS}; msgs/s and fds/s; fdpass API: ${describeApi(fdpassMode)})`);
  const header = [
    'socktype',
    'K',
    'C msgs/s',
    'C fds/s',
    'C mmsg msgs/s',
    'fdpass msgs/s',
    'fdpass fds/s',
    'spread',
    'node msgs/s',
    'node fds/s',
    'fdpass÷C',
    'fdpass÷C mmsg',
    'fdpass÷node',
    'fdpass RSS',
  ];
  const rows: string[][] = [];
  for (const type of types) {
    for (const k of ks) {
      const c = find('c-epoll', type, k)!;
      const cm = find('c-mmsg', type, k)!;
      const f = find('fdpass', type, k)!;
      const nc = find('node-core', type, k)!;
      rows.push([
        type,
        String(k),
        fmt(rate(c)),
        fmt(rate(c) * k),
        fmt(rate(cm)),
        fmt(rate(f)),
        fmt(rate(f) * k),
        spread(f),
        fmt(rate(nc)),
        fmt(rate(nc) * k),
        `${(rate(f) / rate(c)).toFixed(2)}×`,
        `${(rate(f) / rate(cm)).toFixed(2)}×`,
        `${(rate(f) / rate(nc)).toFixed(0)}×`,
        `${(Math.max(...f.rss) / 1024).toFixed(0)} MB`,
      ]);
    }
  }
  printTable(header, rows);
  console.log('(node-core: Node IPC is a stream socket whatever the row; "spread": half the min-max range of fdpass\'s repetitions)\n');
  for (const c of cells) {
    const r = rate(c);
    console.log(`RESULT impl=${c.impl} socktype=${c.type} k=${c.k} n=${c.n} msgs_per_s=${r.toFixed(0)} fds_per_s=${(r * c.k).toFixed(0)}`);
  }
}

// 'write+closeFds' -> what the sender and the receiver called.
function describeApi(mode: string): string {
  const [send, close] = mode.split('+');
  const sender =
    send === 'writeMany'
      ? "sender `if (!ch.writeMany(batchOf32)) await once(ch, 'drain')`"
      : send === 'write'
        ? "sender `if (!ch.write(m)) await once(ch, 'drain')`"
        : 'sender `await ch.send(m)`';
  const receiver = close === 'closeFds' ? 'receiver `closeFds(m.fds)`' : 'receiver `for (const fd of m.fds) closeFd(fd)`';
  return `${sender}, ${receiver}`;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w, i) => (i < 1 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

interface SoakReport {
  elapsed_ns: number;
  sender: { early: { rss_kb: number; fds: number }; end: { rss_kb: number; fds: number } };
  receiver: { early: { rss_kb: number; fds: number }; end: { rss_kb: number; fds: number } };
}

async function soak(): Promise<void> {
  const r = (await runJson(
    process.execPath,
    [path.join(__dirname, 'rt-fdpass.js'), 'seqpacket', '1', String(SOAK), process.env.FDPASS_API ?? 'best', 'soak'],
    600_000,
  )) as unknown as SoakReport;
  const checkpoint = Math.floor(SOAK / 10);
  console.log(
    `\nsoak: ${SOAK} messages (K=1, seqpacket) through one channel in ${(r.elapsed_ns / 1e9).toFixed(1)} s (${fmt(SOAK / (r.elapsed_ns / 1e9))} msgs/s)`,
  );
  const rows = (['sender', 'receiver'] as const).map((side) => {
    const s = r[side];
    const growth = ((s.end.rss_kb - s.early.rss_kb) / s.early.rss_kb) * 100;
    return [
      side,
      `${(s.early.rss_kb / 1024).toFixed(1)} MB`,
      `${(s.end.rss_kb / 1024).toFixed(1)} MB`,
      `${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%`,
      String(s.early.fds),
      String(s.end.fds),
    ];
  });
  printTable(['process', `RSS after ${fmt(checkpoint)}`, 'RSS at end', 'growth', `fds after ${fmt(checkpoint)}`, 'fds at end'], rows);
  for (const side of ['sender', 'receiver'] as const) {
    const s = r[side];
    console.log(
      `RESULT soak side=${side} n=${SOAK} rss_early_kb=${s.early.rss_kb} rss_end_kb=${s.end.rss_kb} fds_early=${s.early.fds} fds_end=${s.end.fds}`,
    );
  }
}

// ---- accept and distribute ----

function ensureWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return; // wrk --version exits 1 but exists
    console.log('installing wrk from Debian...');
    execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk'], { stdio: 'inherit' });
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function startServer(script: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (l) => {
      try {
        if ((JSON.parse(l) as { event?: string }).event === 'serving') resolve(child);
      } catch {
        // not ours
      }
    });
    child.once('exit', (code) => reject(new Error(`${path.basename(script)} exited (${code}) before serving`)));
  });
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

interface WrkResult {
  rps: number;
  p99ms: number;
  errors: number;
  non2xx: number;
}

function toMs(v: string, unit: string): number {
  const x = Number(v);
  return unit === 'us' ? x / 1000 : unit === 's' ? x * 1000 : x;
}

function wrk(port: number, seconds: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'wrk',
      ['-t2', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-H', 'Connection: close', `http://127.0.0.1:${port}/`],
      (err, out) => {
        if (err) return reject(err);
        const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
        const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(out);
        const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
        const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
        resolve({
          rps,
          p99ms: p99 ? toMs(p99[1]!, p99[2]!) : NaN,
          errors: se
            ? se
                .slice(1)
                .map(Number)
                .reduce((a, b) => a + b, 0)
            : 0,
          non2xx,
        });
      },
    );
  });
}

type Setup = 'fdpass' | 'cluster' | 'reuseport';

async function deploy(setup: Setup, port: number): Promise<ChildProcess[]> {
  const dist = path.join(__dirname, 'distribute.js');
  if (setup === 'fdpass') return [await startServer(dist, ['fdpass', String(port)])];
  if (setup === 'cluster') return [await startServer(path.join(OUT, 'bench', 'apps', 'cluster-server.js'), [String(port), '2'])];
  return Promise.all([startServer(dist, ['reuseport', String(port)]), startServer(dist, ['reuseport', String(port)])]);
}

async function distribute(): Promise<void> {
  ensureWrk();
  const setups: Setup[] = ['fdpass', 'cluster', 'reuseport'];
  const results = new Map<Setup, WrkResult[]>(setups.map((s) => [s, []]));
  console.log(
    `\naccept and distribute: wrk -t2 -c${CONNECTIONS} -d${HTTP_SECONDS}s -H 'Connection: close' (after a 1 s warm-up), ${HTTP_REPS} interleaved repetitions`,
  );
  for (let rep = 0; rep < HTTP_REPS; rep++) {
    for (const setup of setups) {
      const port = await freePort();
      const procs = await deploy(setup, port);
      await wrk(port, 1);
      results.get(setup)!.push(await wrk(port, HTTP_SECONDS));
      for (const p of procs) await stopServer(p);
    }
    process.stdout.write(`  repetition ${rep + 1}/${HTTP_REPS} done\n`);
  }
  const label: Record<Setup, string> = {
    fdpass: 'fdpass primary -> 2 workers',
    cluster: 'Node cluster round robin, 2 workers',
    reuseport: '2 workers, listenReusePort',
  };
  const rows = setups.map((s) => {
    const rs = results.get(s)!;
    return [
      label[s],
      fmt(median(rs.map((r) => r.rps))),
      `${median(rs.map((r) => r.p99ms)).toFixed(1)} ms`,
      String(rs.reduce((a, r) => a + r.errors, 0)),
      String(rs.reduce((a, r) => a + r.non2xx, 0)),
    ];
  });
  console.log('');
  printTable(['setup', 'requests/s', 'p99 latency', 'socket errors', 'non-2xx'], rows);
  console.log('');
  for (const s of setups) {
    const rs = results.get(s)!;
    console.log(
      `RESULT workload=accept-distribute impl=${s} requests_per_s=${median(rs.map((r) => r.rps)).toFixed(0)} p99_ms=${median(rs.map((r) => r.p99ms)).toFixed(2)}`,
    );
  }
}

async function main(): Promise<void> {
  const start = Date.now();
  console.log(
    `fdpass bench: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), Linux ${os.release()}, Node ${process.version}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  // node-gyp-build prefers build/Release and falls back to prebuilds/: say which one ran.
  const addon = (require('node-gyp-build') as { resolve(dir: string): string }).resolve(ROOT);
  console.log(`addon: ${path.relative(ROOT, addon)}`);
  compileC();
  if (ONLY === undefined || ONLY === 'roundtrip') await roundTrip();
  if (ONLY === undefined || ONLY === 'soak') await soak();
  if (ONLY === undefined || ONLY === 'http') await distribute();
  console.log(
    `\ntotal ${((Date.now() - start) / 1000).toFixed(0)} s; load average at the end ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
