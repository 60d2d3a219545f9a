// npm run bench:handoff — zero-downtime restarts under load, measured with wrk (HTTP/1.1, plain and
// TLS) and h2load (HTTP/2). Each scenario is a restart method, a protocol and a client mode:
//   fdpass   hand-off (examples/hot-restart-server.ts); http, https or http2
//   naive    close, then bind (examples/naive-server.ts); http
//   cluster  Node cluster rolling restart (examples/cluster-server.ts); http
//   close    a new connection per request (wrk -H 'Connection: close')
//   keepalive  keep-alive connections reused for every request (wrk's and h2load's default)
// For each scenario it runs REPS interleaved pairs of (control without restarts, run with HANDOFFS
// restarts spread over DURATION seconds), CONNECTIONS connections, and reports medians.
// Knobs: DURATION (s, default 20), HANDOFFS (10), CONNECTIONS (64), REPS (3),
// SCENARIOS (comma-separated method:protocol:mode, default all of the table below),
// LATENCY=1 (also time every request; below), RATE (req/s, with LATENCY=1 and wrk: a paced load, below).
//
// LATENCY=1: the p99 latency around each hand-off against the p99 in steady state. Every request's
// start and latency are logged (wrk with bench/latency.lua: the request carries its start time in an
// X-Start header, which the example servers echo, since wrk's Lua hooks cannot tell connections
// apart; h2load: --log-file), and every restart's moments (examples/restarts.ts' marks):
//   took      the new process serves: fdpass, its take() returned and it accepts on the inherited
//             listener, side by side with the old one for the 1 s overlap; naive, it bound; cluster,
//             the new worker listens
//   draining  the old process stopped accepting: fdpass, it handed off (closed its copy) and drains,
//             ~1 s after took; naive, it was sent SIGTERM (before took); cluster, the old worker was
//             disconnected (the same moment as took)
// Per run with restarts: the p99 of requests that started within ±0.5 s of a took, of those within
// ±0.5 s of a draining, and of the steady ones (started > 2 s from every mark), next to the p99 of the
// whole control run; "worst" is the higher of the two around-hand-off p99s. Requests that started in
// the first second of a run (cold server, every connection opening) count nowhere. Steady windows
// need room: an fdpass restart spans ~1.3 s, so leave > 5.5 s between restarts (DURATION=40
// HANDOFFS=5: one every 6.7 s, ~14 s of steady requests per run).
// The Lua hooks cost wrk throughput, so LATENCY=1 runs' req/s are not comparable to runs without.
// RATE=n: instead of saturating the server (every connection sends its next request as soon as the
// last one is answered: on this 2-core machine the p99 is then mostly time spent queued behind the
// CPU scheduler), each connection waits a random exponential delay before each request, so that all
// together send about n requests a second: the load of a server with headroom, as in production.
// (Not a strict open loop: a connection waits for its answer before its next delay.)
// Installs wrk and nghttp2-client (h2load) from Debian when missing (needs root and apt).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deploy, type Method, type ServerKind } from '../examples/restarts';
import { selfSignedCert } from './apps/tls-cert';
import { handoffLatency, type HandoffLatency } from './latency';
import { ensureTool, h2load, median, underRestarts, wrk, type LoadResult } from './load';

const DURATION = Number(process.env.DURATION ?? 20);
const HANDOFFS = Number(process.env.HANDOFFS ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const REPS = Number(process.env.REPS ?? 3);
const LATENCY = process.env.LATENCY === '1';
const RATE = process.env.RATE === undefined ? undefined : Number(process.env.RATE);
if (RATE !== undefined && !(RATE > 0 && LATENCY)) throw new Error('RATE must be a positive number of requests a second, with LATENCY=1');
const DEFAULT_SCENARIOS = [
  'fdpass:http:close',
  'fdpass:http:keepalive',
  'fdpass:https:keepalive',
  'fdpass:http2:keepalive',
  'naive:http:close',
  'naive:http:keepalive',
  'cluster:http:close',
  'cluster:http:keepalive',
];
const SCENARIOS = (process.env.SCENARIOS ?? DEFAULT_SCENARIOS.join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

interface Scenario {
  method: Method;
  protocol: ServerKind['kind'];
  keepAlive: boolean;
  label: string;
}

function parseScenario(s: string): Scenario {
  const [method, protocol, mode] = s.split(':');
  if (
    !['fdpass', 'naive', 'cluster'].includes(method!) ||
    !['http', 'https', 'http2'].includes(protocol!) ||
    !['close', 'keepalive'].includes(mode!)
  ) {
    throw new Error(`bad scenario '${s}': method:protocol:mode, e.g. fdpass:http2:keepalive`);
  }
  if (method !== 'fdpass' && protocol !== 'http') throw new Error(`${method} serves http only`);
  if (protocol === 'http2' && mode === 'close') throw new Error('http2 runs keep-alive only (h2load)');
  return { method: method as Method, protocol: protocol as ServerKind['kind'], keepAlive: mode === 'keepalive', label: s };
}

function runLoad(s: Scenario, port: number, seconds: number, dir: string): Promise<LoadResult> {
  const url = `${s.protocol === 'http' ? 'http' : 'https'}://127.0.0.1:${port}/`;
  const log = LATENCY ? { requestLog: path.join(dir, 'requests') } : {};
  return s.protocol === 'http2'
    ? h2load(url, { connections: CONNECTIONS, seconds, ...log })
    : wrk(url, { connections: CONNECTIONS, seconds, keepAlive: s.keepAlive, ...log, ...(RATE === undefined ? {} : { rate: RATE }) });
}

type Measured = Awaited<ReturnType<typeof underRestarts>>;

function measure(s: Scenario, restarts: number, tls: { key: string; cert: string }): Promise<Measured> {
  return underRestarts(
    (port, dir) => deploy(s.method, port, path.join(dir, 'control.sock'), { kind: s.protocol, ...tls }),
    (port, dir) => runLoad(s, port, DURATION, dir),
    restarts,
    DURATION,
  );
}

function ms(x: number): string {
  return Number.isNaN(x) ? '-' : x.toFixed(1);
}

function ratio(x: number): string {
  return Number.isNaN(x) ? '-' : `${x.toFixed(2)}×`;
}

async function main(): Promise<void> {
  const scenarios = SCENARIOS.map(parseScenario);
  if (RATE !== undefined && scenarios.some((s) => s.protocol === 'http2'))
    throw new Error('RATE paces wrk only: leave out the http2 scenarios');
  ensureTool('wrk', ['--version'], 'wrk');
  if (scenarios.some((s) => s.protocol === 'http2')) ensureTool('h2load', ['--version'], 'nghttp2-client');
  const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-tls-'));
  const tls = selfSignedCert(certDir);
  console.log(
    `${CONNECTIONS} connections${RATE === undefined ? '' : ` paced to ~${RATE} req/s in all`}, ${DURATION} s per run, ${HANDOFFS} restarts, ${REPS} interleaved (control, restarts) pairs per scenario; ${os.cpus().length} cores, Node ${process.version}, Linux ${os.release()}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  const rows: string[] = [];
  const latencyRows: string[] = [];
  const results: string[] = [];
  for (const s of scenarios) {
    const runs: LoadResult[] = [];
    const ratios: number[] = [];
    const controls: number[] = [];
    const latencies: HandoffLatency[] = [];
    let restarts = 0;
    for (let rep = 0; rep < REPS; rep++) {
      // Alternate which of the pair goes first, so drift in the machine's load hits both alike.
      const pair =
        rep % 2 === 0
          ? [await measure(s, 0, tls), await measure(s, HANDOFFS, tls)]
          : [await measure(s, HANDOFFS, tls), await measure(s, 0, tls)].reverse();
      const [control, run] = pair as [Measured, Measured];
      runs.push(run.result);
      controls.push(control.result.rps);
      ratios.push(run.result.requests / control.result.requests);
      restarts += run.done;
      console.log(
        `${s.label} pair ${rep + 1}/${REPS}: ${run.result.requests} requests, ${run.result.errors} errors, ${run.result.non2xx} non-2xx, ${(ratios.at(-1)! * 100).toFixed(1)}% of control (${run.result.detail})`,
      );
      if (LATENCY) {
        const l = handoffLatency(run.result.times!, run.marks, control.result.times!);
        delete run.result.times; // ~16 bytes a request: let it go
        delete control.result.times;
        latencies.push(l);
        const w = (x: { p99: number; n: number }): string => `${ms(x.p99)} ms (${x.n})`;
        console.log(
          `${s.label} pair ${rep + 1}/${REPS} p99 (requests): control ${w(l.control)}, steady ${w(l.steady)}, ±0.5 s of took ${w(l.took)}, ±0.5 s of draining ${w(l.draining)}; worst ${ratio(l.vsSteady)} steady, ${ratio(l.vsControl)} control; ${l.handoffs} hand-offs under load`,
        );
      }
    }
    const errors = runs.reduce((a, r) => a + r.errors, 0);
    const non2xx = runs.reduce((a, r) => a + r.non2xx, 0);
    const spread = ratios.length > 1 ? `${((Math.max(...ratios) - Math.min(...ratios)) * 100).toFixed(1)} pts` : '-';
    rows.push(
      `| ${s.label.padEnd(24)} | ${String(restarts).padStart(8)} | ${String(median(runs.map((r) => r.requests))).padStart(9)} | ${String(errors).padStart(6)} | ${String(non2xx).padStart(6)} | ${median(
        runs.map((r) => r.rps),
      )
        .toFixed(0)
        .padStart(
          7,
        )} | ${median(controls).toFixed(0).padStart(9)} | ${(median(ratios) * 100).toFixed(1).padStart(6)}% | ${spread.padStart(8)} |`,
    );
    results.push(
      `RESULT scenario=${s.label} restarts=${restarts} errors=${errors} non2xx=${non2xx} median_ratio=${median(ratios).toFixed(3)}`,
    );
    if (LATENCY) {
      const m = (f: (l: HandoffLatency) => number): number => median(latencies.map(f));
      const handoffs = latencies.reduce((a, l) => a + l.handoffs, 0);
      latencyRows.push(
        `| ${s.label.padEnd(24)} | ${String(handoffs).padStart(9)} | ${ms(m((l) => l.control.p99)).padStart(8)} | ${ms(m((l) => l.steady.p99)).padStart(10)} | ${ms(m((l) => l.took.p99)).padStart(8)} | ${ms(m((l) => l.draining.p99)).padStart(12)} | ${ratio(m((l) => l.vsSteady)).padStart(12)} | ${ratio(m((l) => l.vsControl)).padStart(10)} |`,
      );
      results.push(
        `RESULT latency scenario=${s.label} handoffs=${handoffs} control_p99_ms=${ms(m((l) => l.control.p99))} steady_p99_ms=${ms(m((l) => l.steady.p99))} took_p99_ms=${ms(m((l) => l.took.p99))} draining_p99_ms=${ms(m((l) => l.draining.p99))} worst_vs_steady=${m((l) => l.vsSteady).toFixed(2)} worst_vs_control=${m((l) => l.vsControl).toFixed(2)}`,
      );
    }
  }
  fs.rmSync(certDir, { recursive: true, force: true });
  console.log('\n| scenario                 | restarts |  requests | errors | non2xx |   req/s | control/s | vs ctrl |   spread |');
  console.log('|:-------------------------|---------:|----------:|-------:|-------:|--------:|----------:|--------:|---------:|');
  for (const row of rows) console.log(row);
  console.log(
    `(requests, req/s, control/s and "vs ctrl": medians over ${REPS} pairs; errors and non2xx: totals over all runs with restarts; spread: max - min of "vs ctrl")\n`,
  );
  if (LATENCY) {
    console.log('| scenario                 | hand-offs | ctrl p99 | steady p99 | took p99 | draining p99 | worst÷steady | worst÷ctrl |');
    console.log('|:-------------------------|----------:|---------:|-----------:|---------:|-------------:|-------------:|-----------:|');
    for (const row of latencyRows) console.log(row);
    console.log(
      `(p99 in ms of the requests that started after the first second: in the control run; > 2 s from every restart mark; within ±0.5 s of a "took" / a "draining" mark; worst: the higher of took and draining. Medians over ${REPS} pairs; hand-offs: total under load)\n`,
    );
  }
  for (const line of results) console.log(line);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
