// Generations of bench/apps/hot-restart-server.ts (the hand-off recipe) for chaos and soak: start one,
// watch its debug output and its "serving" report, count its descriptors, ask it a question.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import * as readline from 'node:readline';

const SERVER = path.join(__dirname, 'apps', 'hot-restart-server.js');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Generation {
  child: ChildProcess;
  pid: number;
  stderr: string;
  serving: Promise<{ inherited: boolean }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
}

export function start(port: number, control: string): Generation {
  const child = spawn(process.execPath, [SERVER, String(port), control], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_DEBUG: 'fdpass' },
  });
  const g: Generation = { child, pid: child.pid!, stderr: '', serving: undefined!, exited: undefined!, done: false };
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (g.stderr = (g.stderr + d).slice(-20_000)));
  g.exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      g.done = true;
      resolve({ code, signal });
    }),
  );
  g.serving = new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      try {
        const m = JSON.parse(line) as { event?: string; inherited?: boolean };
        if (m.event === 'serving') resolve({ inherited: m.inherited === true });
      } catch {
        // not ours
      }
    });
    lines.on('close', () => reject(new Error(`pid ${g.pid} exited before serving`)));
  });
  g.serving.catch(() => {});
  return g;
}

export async function until(_what: string, check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

// The process's descriptors other than TCP connections (clients come and go under load): listeners,
// control sockets, pipes, files. A leak shows up here; a client in flight does not. A socket counts
// when its inode is a Unix socket, a UDP socket or a TCP listener: those tables change only with the
// process's own set-up. (Subtracting the TCP connections instead miscounts one accepted between
// reading the tables and the descriptors, or one reset and already out of the table.)
export function fdCount(pid: number): number {
  try {
    const links: string[] = [];
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        links.push(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
    const kept = new Set<string>();
    for (const table of ['unix', 'udp', 'udp6', 'tcp', 'tcp6']) {
      const lines = fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1);
      for (const line of lines) {
        const f = line.trim().split(/\s+/);
        if (table === 'unix')
          kept.add(f[6]!); // Num RefCount Protocol Flags Type St Inode [Path]
        else if (!table.startsWith('tcp') || f[3] === '0A') kept.add(f[9]!); // state 0A is LISTEN
      }
    }
    return links.filter((link) => {
      const m = /^socket:\[(\d+)\]$/.exec(link);
      return m === null || kept.has(m[1]!);
    }).length;
  } catch {
    return -1;
  }
}

export function ask(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : `status ${res.statusCode}`));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
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
