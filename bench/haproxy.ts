// HAProxy in front of a benchmark's server: `wrk -> haproxy -> server`, with the upstream connections
// kept open and shared between clients (`http-reuse always`), as a production proxy keeps them. A
// hand-off that closes those connections races HAProxy's next request on them; one that moves them
// leaves HAProxy nothing to see. Each instance runs in its own temporary directory (config and stats
// socket) and is stopped by its pid; its counters come from the stats socket (`show stat`).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './load';

/** One row of `show stat`, by field name (pxname, svname, connect, reuse, hrsp_5xx, ...). */
export type StatRow = Record<string, string>;

/** The counters the benchmark reports, from the frontend's and the backend server's rows. */
export interface ProxyStats {
  /** Connections HAProxy established to the server (the server row's `connect`). */
  connects: number;
  /** Requests sent over a connection that was already open (`reuse`). */
  reuses: number;
  /** 5xx responses HAProxy sent to clients, its own 502/503/504 included (the frontend's `hrsp_5xx`). */
  http5xx: number;
  /** The server row's connection errors (`econ`), response errors (`eresp`), retries (`wretr`). */
  econ: number;
  eresp: number;
  retries: number;
}

export interface Haproxy {
  /** The port clients connect to. */
  readonly port: number;
  /** Every row of `show stat`. */
  showStat(): Promise<StatRow[]>;
  /** The counters of the one frontend and backend server. */
  stats(): Promise<ProxyStats>;
  /** Stops HAProxy (SIGTERM to its pid), waits for its exit and removes its directory. */
  stop(): Promise<void>;
}

const FRONTEND = 'clients';
const BACKEND = 'app';
const SERVER = 'server';
// Whatever way the benchmark ends (an error, Ctrl-C, SIGTERM), its HAProxy processes end with it and
// their directories go.
const running = new Map<ChildProcess, string>();
function cleanUp(): void {
  for (const [child, dir] of running) {
    child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  running.clear();
}
process.on('exit', cleanUp);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    cleanUp();
    process.kill(process.pid, signal); // then die of it, as without this handler
  });
}

function config(port: number, serverPort: number, socket: string): string {
  return `global
  stats socket ${socket} mode 600 level user
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s

frontend ${FRONTEND}
  bind 127.0.0.1:${port}
  default_backend ${BACKEND}

backend ${BACKEND}
  http-reuse always
  server ${SERVER} 127.0.0.1:${serverPort}
`;
}

function query(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const c = net.connect(socket, () => c.end(`${command}\n`));
    c.setEncoding('utf8');
    c.on('data', (d: string) => (out += d));
    c.on('end', () => resolve(out));
    c.on('error', reject);
  });
}

/** Parses `show stat` (CSV: a header line `# pxname,svname,...`, then one line per proxy and server). */
export function parseShowStat(csv: string): StatRow[] {
  const lines = csv.split('\n').filter((l) => l !== '');
  const header = lines[0]?.replace(/^# /, '').split(',');
  if (header === undefined || header[0] !== 'pxname') throw new Error(`haproxy: not 'show stat' output: ${csv.slice(0, 200)}`);
  return lines.slice(1).map((line) => {
    const values = line.split(',');
    return Object.fromEntries(header.map((name, i) => [name, values[i] ?? '']));
  });
}

function field(row: StatRow | undefined, name: string): number {
  const v = row?.[name];
  if (v === undefined) throw new Error(`haproxy: no '${name}' in 'show stat' (fields: ${Object.keys(row ?? {}).join(',')})`);
  return v === '' ? 0 : Number(v);
}

/** Starts HAProxy on a free port in front of 127.0.0.1:`serverPort`; resolves once its stats socket answers. */
export async function startHaproxy(serverPort: number): Promise<Haproxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-bench-haproxy-'));
  const socket = path.join(dir, 'stats.sock');
  const cfg = path.join(dir, 'haproxy.cfg');
  const port = await freePort();
  fs.writeFileSync(cfg, config(port, serverPort, socket));
  // -db: in the foreground, so that the pid is HAProxy's own.
  const child = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.set(child, dir);
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => {
    gone = true;
    running.delete(child);
  });
  const stop = async (): Promise<void> => {
    if (!gone) child.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const showStat = async (): Promise<StatRow[]> => parseShowStat(await query(socket, 'show stat'));
  try {
    for (let waited = 0; ; waited += 20) {
      if (gone) throw new Error(`haproxy exited at start:\n${output}`);
      if (waited >= 10_000) throw new Error(`haproxy's stats socket did not answer within 10 s:\n${output}`);
      try {
        await showStat();
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    port,
    showStat,
    async stats() {
      const rows = await showStat();
      const frontend = rows.find((r) => r.pxname === FRONTEND && r.svname === 'FRONTEND');
      const server = rows.find((r) => r.pxname === BACKEND && r.svname === SERVER);
      return {
        connects: field(server, 'connect'),
        reuses: field(server, 'reuse'),
        http5xx: field(frontend, 'hrsp_5xx'),
        econ: field(server, 'econ'),
        eresp: field(server, 'eresp'),
        retries: field(server, 'wretr'),
      };
    },
    stop,
  };
}
