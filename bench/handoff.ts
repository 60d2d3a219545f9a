// npm run bench:handoff — zero-downtime restarts under load, measured with wrk (HTTP/1.1, plain and
// TLS) and h2load (HTTP/2). Each scenario is a restart method, a protocol and a client mode:
//   fdpass   hand-off (bench/apps/hot-restart-server.ts), connections drained; http, https or http2
//   fdpass-migrate  the same, keep-alive connections moved to the new process (serve's migrate); http
//   naive    close, then bind (bench/apps/naive-server.ts); http
//   cluster  Node cluster rolling restart (bench/apps/cluster-server.ts); http
//   close    a new connection per request (wrk -H 'Connection: close')
//   keepalive  keep-alive connections reused for every request (wrk's and h2load's default)
// For each scenario it runs REPS interleaved pairs of (control without restarts, run with HANDOFFS
// restarts spread over DURATION seconds), CONNECTIONS connections, and reports medians.
// Knobs: DURATION (s, default 20), HANDOFFS (10), CONNECTIONS (64), REPS (3),
// SCENARIOS (comma-separated method:protocol:mode, default all of the table below; `handoff.js
// migrate`, i.e. npm run bench:migrate: fdpass-migrate and fdpass, http keep-alive),
// LATENCY=1 (also time every request; below), RATE (req/s, with LATENCY=1 and wrk: a paced load, below),
// PROXY=haproxy (wrk -> HAProxy -> server; below). CLOSE_SPREAD=ms reaches the fdpass servers
// (bench/apps/hot-restart-server.ts: serve's closeSpread): it spreads the drain's closes, and in
// fdpass-migrate the moves, over that window; e.g. `CLOSE_SPREAD=1000 LATENCY=1 RATE=15000 npm run
// bench:migrate` compares the two spread alike.
//
// Connections opened: every server process counts the connections its listener accepted (moved-in
// ones not counted) and says so at its exit; a run's sum is how many connections the clients (or
// HAProxy) opened. wrk first connects once to check the address (closed at once), then opens
// CONNECTIONS, and another one only when one is closed: with keep-alive, a drain makes that
// 1 + CONNECTIONS × (restarts + 1), migration 1 + CONNECTIONS (a restart that completes after the
// load has ended adds nothing: leave it room). fdpass-migrate also sums where the old processes'
// connections went (moved, failed, drained).
//
// PROXY=haproxy: each run starts its own HAProxy (Debian's package, installed when missing), in
// http mode with `http-reuse always` and the one server, config and stats socket in a temporary
// directory, and points wrk at it. From HAProxy's stats socket (`show stat`) after each run: the 5xx
// it sent to clients (its own 502/503 included), and the connections it established to the server
// (the server row's `connect`): in all, before the first restart (sampled just before each restart),
// and during each restart's interval. Plain http scenarios only.
//
// LATENCY=1: the p99 latency around each hand-off against the p99 in steady state. Every request's
// start and latency are logged (wrk with bench/latency.lua: the request carries its start time in an
// X-Start header, which the example servers echo, since wrk's Lua hooks cannot tell connections
// apart; h2load: --log-file), and every restart's moments (bench/apps/restarts.ts' marks):
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
// Installs wrk, nghttp2-client (h2load) and haproxy from Debian when missing (needs root and apt).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deploy, type ConnectionCounts, type Deployment, type Method, type ServerKind } from './apps/restarts';
import { selfSignedCert } from './apps/tls-cert';
import { startHaproxy, type Haproxy, type ProxyStats } from './haproxy';
import { handoffLatency, type HandoffLatency } from './latency';
import { ensureTool, h2load, median, underRestarts, wrk, type LoadResult } from './load';

const DURATION = Number(process.env.DURATION ?? 20);
const HANDOFFS = Number(process.env.HANDOFFS ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const REPS = Number(process.env.REPS ?? 3);
const LATENCY = process.env.LATENCY === '1';
const RATE = process.env.RATE === undefined ? undefined : Number(process.env.RATE);
if (RATE !== undefined && !(RATE > 0 && LATENCY)) throw new Error('RATE must be a positive number of requests a second, with LATENCY=1');
const PROXY = process.env.PROXY || undefined;
if (PROXY !== undefined && PROXY !== 'haproxy') throw new Error(`PROXY: 'haproxy' or nothing, not '${PROXY}'`);
const DEFAULT_SCENARIOS = [
  'fdpass:http:close',
  'fdpass:http:keepalive',
  'fdpass-migrate:http:keepalive',
  'fdpass:https:keepalive',
  'fdpass:http2:keepalive',
  'naive:http:close',
  'naive:http:keepalive',
  'cluster:http:close',
  'cluster:http:keepalive',
];
const MIGRATE_SCENARIOS = ['fdpass-migrate:http:keepalive', 'fdpass:http:keepalive'];
const SCENARIOS = (process.env.SCENARIOS ?? (process.argv[2] === 'migrate' ? MIGRATE_SCENARIOS : DEFAULT_SCENARIOS).join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

interface Scenario {
  method: Method;
  /** fdpass-migrate: keep-alive connections move at each hand-off. */
  migrate: boolean;
  protocol: ServerKind['kind'];
  keepAlive: boolean;
  label: string;
}

function parseScenario(s: string): Scenario {
  const [method, protocol, mode] = s.split(':');
  if (
    !['fdpass', 'fdpass-migrate', 'naive', 'cluster'].includes(method!) ||
    !['http', 'https', 'http2'].includes(protocol!) ||
    !['close', 'keepalive'].includes(mode!)
  ) {
    throw new Error(`bad scenario '${s}': method:protocol:mode, e.g. fdpass:http2:keepalive`);
  }
  // TLS and HTTP/2 connections cannot move (docs/handoff.md): fdpass-migrate would only drain them.
  if (method !== 'fdpass' && protocol !== 'http') throw new Error(`${method} serves http only`);
  if (protocol === 'http2' && mode === 'close') throw new Error('http2 runs keep-alive only (h2load)');
  if (PROXY !== undefined && protocol !== 'http') throw new Error(`PROXY=${PROXY} runs http scenarios only, not '${s}'`);
  const migrate = method === 'fdpass-migrate';
  return {
    method: migrate ? 'fdpass' : (method as Method),
    migrate,
    protocol: protocol as ServerKind['kind'],
    keepAlive: mode === 'keepalive',
    label: s,
  };
}

function runLoad(s: Scenario, port: number, seconds: number, dir: string): Promise<LoadResult> {
  const url = `${s.protocol === 'http' ? 'http' : 'https'}://127.0.0.1:${port}/`;
  const log = LATENCY ? { requestLog: path.join(dir, 'requests') } : {};
  return s.protocol === 'http2'
    ? h2load(url, { connections: CONNECTIONS, seconds, ...log })
    : wrk(url, { connections: CONNECTIONS, seconds, keepAlive: s.keepAlive, ...log, ...(RATE === undefined ? {} : { rate: RATE }) });
}

/** HAProxy's counters just before each restart, and at the end of the load. */
interface ProxySamples {
  before: ProxyStats[];
  after: ProxyStats;
}

type Measured = Awaited<ReturnType<typeof underRestarts>> & {
  connections: { accepted: number | undefined; migrated: number; failed: number; drained: number };
  proxy?: ProxySamples;
};

function snapshot(c: ConnectionCounts): Measured['connections'] {
  return { accepted: c.accepted, migrated: c.migrated, failed: c.failed, drained: c.drained };
}

async function measure(s: Scenario, restarts: number, tls: { key: string; cert: string }): Promise<Measured> {
  let deployment: Deployment | undefined;
  let proxy: Haproxy | undefined;
  const before: ProxyStats[] = [];
  let after: ProxyStats | undefined;
  let finished = false;
  try {
    const m = await underRestarts(
      async (port, dir) => {
        const d = await deploy(s.method, port, path.join(dir, 'control.sock'), { kind: s.protocol, ...tls, migrate: s.migrate });
        deployment = d;
        if (PROXY === undefined) return d;
        const p = await startHaproxy(port);
        proxy = p;
        return {
          marks: d.marks,
          async restart() {
            before.push(await p.stats());
            await d.restart();
          },
          async stop() {
            after = await p.stats();
            await p.stop();
            await d.stop();
          },
        };
      },
      (port, dir) => runLoad(s, proxy?.port ?? port, DURATION, dir),
      restarts,
      DURATION,
    );
    finished = true;
    return { ...m, connections: snapshot(deployment!.connections), ...(after === undefined ? {} : { proxy: { before, after } }) };
  } finally {
    await proxy?.stop(); // on failure; after a run it has stopped already
    if (!finished) await deployment?.stop();
  }
}

// Connections HAProxy established before the first restart, and during each restart's interval (from
// just before it to just before the next one, the last to the end of the load).
function proxyConnects(p: ProxySamples): { first: number; perRestart: number[] } {
  const points = [...p.before, p.after].map((x) => x.connects);
  return { first: points[0]!, perRestart: points.slice(1).map((c, i) => c - points[i]!) };
}

function count(x: number | undefined): string {
  return x === undefined ? '?' : String(x);
}

function medianOf(xs: Array<number | undefined>): number | undefined {
  return xs.some((x) => x === undefined) || xs.length === 0 ? undefined : median(xs as number[]);
}

function ms(x: number): string {
  return Number.isNaN(x) ? '-' : x.toFixed(1);
}

function ratio(x: number): string {
  return Number.isNaN(x) ? '-' : `${x.toFixed(2)}×`;
}

const W = 29; // the longest scenario label, fdpass-migrate:http:keepalive

async function main(): Promise<void> {
  const scenarios = SCENARIOS.map(parseScenario);
  if (RATE !== undefined && scenarios.some((s) => s.protocol === 'http2'))
    throw new Error('RATE paces wrk only: leave out the http2 scenarios');
  ensureTool('wrk', ['--version'], 'wrk');
  if (scenarios.some((s) => s.protocol === 'http2')) ensureTool('h2load', ['--version'], 'nghttp2-client');
  if (PROXY === 'haproxy') ensureTool('haproxy', ['-v'], 'haproxy');
  const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-tls-'));
  const tls = selfSignedCert(certDir);
  console.log(
    `${CONNECTIONS} connections${PROXY === undefined ? '' : ` through ${PROXY}`}${RATE === undefined ? '' : ` paced to ~${RATE} req/s in all`}, ${DURATION} s per run, ${HANDOFFS} restarts, ${REPS} interleaved (control, restarts) pairs per scenario; ${os.cpus().length} cores, Node ${process.version}, Linux ${os.release()}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  const rows: string[] = [];
  const latencyRows: string[] = [];
  const proxyRows: string[] = [];
  const results: string[] = [];
  for (const s of scenarios) {
    const runs: LoadResult[] = [];
    const ratios: number[] = [];
    const controls: number[] = [];
    const latencies: HandoffLatency[] = [];
    const opened: Array<number | undefined> = [];
    const controlOpened: Array<number | undefined> = [];
    const moved = { migrated: 0, failed: 0, drained: 0 };
    const proxied: Array<{ run: ProxySamples; control: ProxySamples }> = [];
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
      opened.push(run.connections.accepted);
      controlOpened.push(control.connections.accepted);
      for (const k of ['migrated', 'failed', 'drained'] as const) moved[k] += run.connections[k];
      console.log(
        `${s.label} pair ${rep + 1}/${REPS}: ${run.result.requests} requests, ${run.result.errors} errors, ${run.result.non2xx} non-2xx, ${(ratios.at(-1)! * 100).toFixed(1)}% of control (${run.result.detail}); connections opened ${count(run.connections.accepted)} (control ${count(control.connections.accepted)})${s.migrate ? `; moved ${run.connections.migrated}, failed ${run.connections.failed}, drained ${run.connections.drained}` : ''}`,
      );
      if (run.proxy && control.proxy) {
        proxied.push({ run: run.proxy, control: control.proxy });
        const a = run.proxy.after;
        const c = proxyConnects(run.proxy);
        console.log(
          `${s.label} pair ${rep + 1}/${REPS} haproxy: ${a.http5xx} 5xx (control ${control.proxy.after.http5xx}); ${a.connects} connections to the server (control ${control.proxy.after.connects}): ${c.first} before the first restart, then per restart ${c.perRestart.join(' ')}; ${a.reuses} reuses, ${a.retries} retries, ${a.eresp} response errors, ${a.econ} connection errors`,
        );
      }
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
      `| ${s.label.padEnd(W)} | ${String(restarts).padStart(8)} | ${String(median(runs.map((r) => r.requests))).padStart(9)} | ${String(errors).padStart(6)} | ${String(non2xx).padStart(6)} | ${count(medianOf(opened)).padStart(6)} | ${median(
        runs.map((r) => r.rps),
      )
        .toFixed(0)
        .padStart(
          7,
        )} | ${median(controls).toFixed(0).padStart(9)} | ${(median(ratios) * 100).toFixed(1).padStart(6)}% | ${spread.padStart(8)} |`,
    );
    results.push(
      `RESULT scenario=${s.label} restarts=${restarts} errors=${errors} non2xx=${non2xx} median_ratio=${median(ratios).toFixed(3)} opened=${count(medianOf(opened))} control_opened=${count(medianOf(controlOpened))}${s.migrate ? ` migrated=${moved.migrated} failed=${moved.failed} drained=${moved.drained}` : ''}`,
    );
    if (proxied.length > 0) {
      const http5xx = proxied.reduce((a, p) => a + p.run.after.http5xx, 0);
      const control5xx = proxied.reduce((a, p) => a + p.control.after.http5xx, 0);
      const connects = median(proxied.map((p) => p.run.after.connects));
      const controlConnects = median(proxied.map((p) => p.control.after.connects));
      const first = median(proxied.map((p) => proxyConnects(p.run).first));
      const per = proxied.flatMap((p) => proxyConnects(p.run).perRestart);
      const perMedian = per.length > 0 ? String(median(per)) : '-';
      const perMax = per.length > 0 ? String(Math.max(...per)) : '-';
      const retries = proxied.reduce((a, p) => a + p.run.after.retries, 0);
      const eresp = proxied.reduce((a, p) => a + p.run.after.eresp, 0);
      proxyRows.push(
        `| ${s.label.padEnd(W)} | ${String(per.length).padStart(8)} | ${String(http5xx).padStart(5)} | ${String(control5xx).padStart(8)} | ${String(connects).padStart(7)} | ${String(controlConnects).padStart(10)} | ${String(first).padStart(6)} | ${perMedian.padStart(12)} | ${perMax.padStart(7)} | ${String(retries).padStart(7)} | ${String(eresp).padStart(5)} |`,
      );
      results.push(
        `RESULT haproxy scenario=${s.label} restarts=${per.length} http5xx=${http5xx} control_http5xx=${control5xx} server_connects=${connects} control_server_connects=${controlConnects} before_first_restart=${first} per_restart_median=${perMedian} per_restart_max=${perMax} retries=${retries} eresp=${eresp}`,
      );
    }
    if (LATENCY) {
      const m = (f: (l: HandoffLatency) => number): number => median(latencies.map(f));
      const handoffs = latencies.reduce((a, l) => a + l.handoffs, 0);
      latencyRows.push(
        `| ${s.label.padEnd(W)} | ${String(handoffs).padStart(9)} | ${ms(m((l) => l.control.p99)).padStart(8)} | ${ms(m((l) => l.steady.p99)).padStart(10)} | ${ms(m((l) => l.took.p99)).padStart(8)} | ${ms(m((l) => l.draining.p99)).padStart(12)} | ${ratio(m((l) => l.vsSteady)).padStart(12)} | ${ratio(m((l) => l.vsControl)).padStart(10)} |`,
      );
      results.push(
        `RESULT latency scenario=${s.label} handoffs=${handoffs} control_p99_ms=${ms(m((l) => l.control.p99))} steady_p99_ms=${ms(m((l) => l.steady.p99))} took_p99_ms=${ms(m((l) => l.took.p99))} draining_p99_ms=${ms(m((l) => l.draining.p99))} worst_vs_steady=${m((l) => l.vsSteady).toFixed(2)} worst_vs_control=${m((l) => l.vsControl).toFixed(2)}`,
      );
    }
  }
  fs.rmSync(certDir, { recursive: true, force: true });
  const label = 'scenario'.padEnd(W);
  const rule = `:${'-'.repeat(W + 1)}`;
  console.log(`\n| ${label} | restarts |  requests | errors | non2xx | opened |   req/s | control/s | vs ctrl |   spread |`);
  console.log(`|${rule}|---------:|----------:|-------:|-------:|-------:|--------:|----------:|--------:|---------:|`);
  for (const row of rows) console.log(row);
  console.log(
    `(requests, opened, req/s, control/s and "vs ctrl": medians over ${REPS} pairs; errors and non2xx: totals over all runs with restarts; opened: connections the server processes accepted in a run with restarts, "?" when one did not say; spread: max - min of "vs ctrl")\n`,
  );
  if (proxyRows.length > 0) {
    console.log(`| ${label} | restarts |   5xx | ctrl 5xx | connect | ctrl conn. | before | per restart | max per | retries | eresp |`);
    console.log(`|${rule}|---------:|------:|---------:|--------:|-----------:|-------:|------------:|--------:|--------:|------:|`);
    for (const row of proxyRows) console.log(row);
    console.log(
      `(HAProxy's stats: 5xx sent to clients and its retries and response errors, totals over the runs with restarts; connect: connections it established to the server in a run, median; before: of those, before the first restart; per restart: from just before one restart to just before the next, median and max over all restarts)\n`,
    );
  }
  if (LATENCY) {
    console.log(`| ${label} | hand-offs | ctrl p99 | steady p99 | took p99 | draining p99 | worst÷steady | worst÷ctrl |`);
    console.log(`|${rule}|----------:|---------:|-----------:|---------:|-------------:|-------------:|-----------:|`);
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
