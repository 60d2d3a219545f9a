// `fdpass status`: what a running `fdpass run` says of itself over its control socket (generations,
// workers, listeners, the last reload), and how the command prints it.
import { procUsage } from '../proc';
import type { Generation } from './generation';

export interface WorkerStatus {
  slot: number;
  /** -1: its start failed; it waits for a restart. */
  pid: number;
  state: 'starting' | 'ready' | 'stopping' | 'exited';
  /** ms since it started. */
  uptimeMs: number;
  /** Crash restarts of its slot in this generation. */
  restarts: number;
  rssBytes: number | undefined;
  cpuMs: number | undefined;
}

export interface GenerationStatus {
  id: number;
  role: 'serving' | 'starting' | 'reload' | 'stopping';
  workers: WorkerStatus[];
}

export interface ReloadOutcome {
  /** ms since the epoch. */
  at: number;
  source: string;
  ok: boolean;
  message: string;
}

export interface SupervisorStatus {
  pid: number;
  command: string[];
  uptimeMs: number;
  rssBytes: number | undefined;
  /** --workers */
  workers: number;
  listeners: Array<{ name: string; address: string }>;
  generations: GenerationStatus[];
  lastReload: ReloadOutcome | null;
  /** It is shutting down: every worker has been sent the stop signal. */
  stopping: boolean;
  /** A reload waits for the generation the previous one stopped to exit. */
  reloadWaiting: boolean;
}

export function generationStatus(gen: Generation, role: GenerationStatus['role'], now: number): GenerationStatus {
  const workers: WorkerStatus[] = [];
  for (let slot = 0; slot < gen.size; slot++) {
    const w = gen.workers[slot];
    if (w === undefined) continue;
    const usage = w.state === 'exited' ? undefined : procUsage(w.pid);
    workers.push({
      slot,
      pid: w.pid,
      state: w.state,
      uptimeMs: now - w.startedAt,
      restarts: gen.restartCounts[slot]!,
      rssBytes: usage?.rssBytes,
      cpuMs: usage?.cpuMs,
    });
  }
  return { id: gen.id, role, workers };
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? '-' : `${(bytes / 2 ** 20).toFixed(1)} MiB`);

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

/** The table `fdpass status` prints. */
export function formatStatus(s: SupervisorStatus): string {
  const state = s.stopping ? ', stopping' : s.reloadWaiting ? ', a reload waits for the previous generation to stop' : '';
  const lines = [
    `fdpass run (pid ${s.pid}), up ${duration(s.uptimeMs)}, ${mib(s.rssBytes)}${state}: ${s.workers} worker(s) of ${s.command.join(' ')}`,
    `listeners: ${s.listeners.map((l) => `${l.name}=${l.address}`).join(', ') || 'none'}`,
  ];
  const rows = [['GEN', 'ROLE', 'SLOT', 'PID', 'STATE', 'UPTIME', 'RESTARTS', 'RSS', 'CPU']];
  for (const g of s.generations) {
    for (const w of g.workers) {
      const cpu = w.cpuMs === undefined ? '-' : `${(w.cpuMs / 1000).toFixed(2)}s`;
      const pid = w.pid > 0 ? String(w.pid) : '-';
      rows.push([String(g.id), g.role, String(w.slot), pid, w.state, duration(w.uptimeMs), String(w.restarts), mib(w.rssBytes), cpu]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows)
    lines.push(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  const r = s.lastReload;
  lines.push(
    r === null
      ? 'last reload: none'
      : `last reload (${r.source}, ${duration(Date.now() - r.at)} ago): ${r.ok ? 'ok' : 'failed'}: ${r.message}`,
  );
  return lines.join('\n');
}
