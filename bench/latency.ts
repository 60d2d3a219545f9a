// Latency per request, against the moments of the restarts: which requests started around a
// hand-off, which in steady state, and their p99. The requests come from wrk with bench/latency.lua
// (HTTP/1.1) or h2load's --log-file (HTTP/2); the moments from bench/apps/restarts.ts' marks.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RestartMark } from './apps/restarts';

/** A run's completed requests: start (ms since the epoch) and latency (ms), index by index. */
export interface RequestTimes {
  start: Float64Array;
  latency: Float64Array;
}

/** Where bench/latency.lua is, next to this file's source (it is not compiled). */
export const WRK_SCRIPT = path.join(__dirname, '..', '..', 'bench', 'latency.lua');

/** A request starting within this many ms of a mark is "around" it. */
export const AROUND_MS = 500;
/** A request starting more than this many ms from every mark is "steady". */
export const STEADY_MS = 2000;
/**
 * Requests that started in the first WARMUP_MS of a run count nowhere (in the control neither): a
 * fresh server's cold JIT and every connection opening at once are not the steady state.
 */
export const WARMUP_MS = 1000;

// Lines of numbers separated by spaces or tabs; `columns` picks [start µs, latency µs] from each.
function readLines(files: string[], columns: [number, number]): RequestTimes {
  const starts: number[] = [];
  const latencies: number[] = [];
  for (const file of files) {
    for (const line of fs.readFileSync(file, 'latin1').split('\n')) {
      if (line === '') continue;
      const f = line.split(/[ \t]/);
      const start = Number(f[columns[0]]);
      const latency = Number(f[columns[1]]);
      if (!(start > 0) || !(latency >= 0)) throw new Error(`${file}: '${line}' is not a timed request (does the server echo X-Start?)`);
      starts.push(start / 1000);
      latencies.push(latency / 1000);
    }
  }
  return { start: Float64Array.from(starts), latency: Float64Array.from(latencies) };
}

/** Reads what bench/latency.lua wrote: `<prefix>.<thread>`, lines "<start µs> <latency µs> <status>". */
export function readWrkLog(prefix: string): RequestTimes {
  const dir = path.dirname(prefix);
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(`${path.basename(prefix)}.`))
    .map((f) => path.join(dir, f));
  if (files.length === 0) throw new Error(`no request log at ${prefix}.* (did wrk run ${WRK_SCRIPT}?)`);
  return readLines(files, [0, 1]);
}

/** Reads h2load's --log-file: lines "<start µs>\t<status>\t<latency µs>". */
export function readH2loadLog(file: string): RequestTimes {
  return readLines([file], [0, 2]);
}

/** p99 in ms (nearest rank) of the latencies picked by `keep`; NaN when none is. */
export function p99(times: RequestTimes, keep: (start: number) => boolean = () => true): { p99: number; n: number } {
  const picked: number[] = [];
  for (let i = 0; i < times.start.length; i++) if (keep(times.start[i]!)) picked.push(times.latency[i]!);
  if (picked.length === 0) return { p99: NaN, n: 0 };
  const sorted = Float64Array.from(picked).sort();
  return { p99: sorted[Math.ceil(0.99 * sorted.length) - 1]!, n: sorted.length };
}

function near(marks: RestartMark[], t: number, ms: number): boolean {
  return marks.some((m) => Math.abs(t - m.t) <= ms);
}

/** The p99s of a run with restarts, next to its control's (a run without, same scenario). */
export interface HandoffLatency {
  /** Hand-offs whose 'took' fell within the load. */
  handoffs: number;
  /** The whole control run, after its warm-up. */
  control: { p99: number; n: number };
  /** Requests that started more than STEADY_MS from every mark of the run (after its warm-up). */
  steady: { p99: number; n: number };
  /** Requests that started within AROUND_MS of a 'took' mark. */
  took: { p99: number; n: number };
  /** Requests that started within AROUND_MS of a 'draining' mark. */
  draining: { p99: number; n: number };
  /** The worse of `took` and `draining`, over `steady` and over `control`. */
  vsSteady: number;
  vsControl: number;
}

function span(times: RequestTimes): { first: number; last: number } {
  let first = Infinity;
  let last = -Infinity;
  for (const t of times.start) [first, last] = [Math.min(first, t), Math.max(last, t)];
  return { first, last };
}

export function handoffLatency(run: RequestTimes, marks: RestartMark[], control: RequestTimes): HandoffLatency {
  const { first, last } = span(run);
  const warm = first + WARMUP_MS;
  const controlWarm = span(control).first + WARMUP_MS;
  const took = marks.filter((m) => m.event === 'took');
  const draining = marks.filter((m) => m.event === 'draining');
  const r: Omit<HandoffLatency, 'vsSteady' | 'vsControl'> = {
    handoffs: took.filter((m) => m.t >= first && m.t <= last).length,
    control: p99(control, (t) => t >= controlWarm),
    steady: p99(run, (t) => t >= warm && !near(marks, t, STEADY_MS)),
    took: p99(run, (t) => t >= warm && near(took, t, AROUND_MS)),
    draining: p99(run, (t) => t >= warm && near(draining, t, AROUND_MS)),
  };
  // NaN (no request in a window) must not hide behind Math.max: it stays NaN.
  const worst = Number.isNaN(r.took.p99) || Number.isNaN(r.draining.p99) ? NaN : Math.max(r.took.p99, r.draining.p99);
  return { ...r, vsSteady: worst / r.steady.p99, vsControl: worst / r.control.p99 };
}
