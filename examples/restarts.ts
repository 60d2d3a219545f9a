// Restart strategies compared by the demo and by bench/handoff: each starts a server on a port and
// replaces its process(es) on request.
//   fdpass   the new process takes the listener from the old one (hand-off); no gap
//   naive    the old process closes and exits, then the new one binds; connections in between fail
//   cluster  Node's cluster: a new worker is forked, the old one disconnected; the primary stays
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as readline from 'node:readline';

export type Method = 'fdpass' | 'naive' | 'cluster';

/**
 * A moment of a restart, for timing requests against it.
 *   took      the new process serves: fdpass, its take() returned and it accepts on the inherited
 *             listener (the old one still accepts too, for the overlap); naive, it bound the port;
 *             cluster, the new worker listens (the old one is disconnected in the same tick)
 *   draining  the old process stopped accepting: fdpass, it handed off, closed its copy and drains;
 *             naive, it was sent SIGTERM; cluster, it was disconnected
 */
export interface RestartMark {
  event: 'took' | 'draining';
  /** ms since the epoch: the server's own clock when it says (fdpass), else when the line arrived. */
  t: number;
}

export interface Deployment {
  /** Replaces the serving process(es); resolves once the replacement serves. */
  restart(): Promise<void>;
  /** Stops everything and waits for every process to exit. */
  stop(): Promise<void>;
  /** The restarts' moments so far, in order. */
  readonly marks: RestartMark[];
}

/** Now in ms since the epoch, sub-ms: the same clock in every process (unlike Date.now(), whole ms). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  next(event: string): Promise<void>;
}

// Reads the script's JSON lines as they come, for as long as it runs (an old fdpass process reports
// 'draining' after nobody waits on it any more), and notes every 'took' and 'draining' in `marks`.
function run(script: string, args: string[], marks: RestartMark[]): Proc {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events: string[] = [];
  let ended = false;
  let wake = (): void => {};
  readline
    .createInterface({ input: child.stdout! })
    .on('line', (line) => {
      const e = JSON.parse(line) as { event?: string; t?: number };
      if (e.event === 'took' || e.event === 'draining') marks.push({ event: e.event, t: e.t ?? epochMs() });
      events.push(e.event ?? '');
      wake();
    })
    .on('close', () => {
      ended = true;
      wake();
    });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    exited,
    async next(event) {
      for (;;) {
        while (events.length > 0) if (events.shift() === event) return;
        if (ended) throw new Error(`${script} (pid ${child.pid}) exited before '${event}'`);
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}

/** For the fdpass method: the server's protocol, and its TLS key and certificate files for https/http2. */
export interface ServerKind {
  kind: 'http' | 'https' | 'http2';
  key?: string;
  cert?: string;
}

// Only the fdpass method serves https and http2 here; the others serve plain http.
export async function deploy(method: Method, port: number, control: string, server: ServerKind = { kind: 'http' }): Promise<Deployment> {
  const marks: RestartMark[] = [];
  if (method === 'fdpass') {
    const args = [String(port), control, server.kind, ...(server.key && server.cert ? [server.key, server.cert] : [])];
    let current = run('hot-restart-server.js', args, marks);
    await current.next('serving');
    const retired: Promise<void>[] = [];
    return {
      marks,
      async restart() {
        const next = run('hot-restart-server.js', args, marks);
        await next.next('serving'); // the old one drains and exits by itself
        retired.push(current.exited);
        current = next;
      },
      async stop() {
        current.child.kill('SIGTERM');
        await Promise.all([current.exited, ...retired]);
      },
    };
  }
  if (method === 'naive') {
    let current = run('naive-server.js', [String(port)], marks);
    await current.next('serving');
    return {
      marks,
      async restart() {
        marks.push({ event: 'draining', t: epochMs() });
        current.child.kill('SIGTERM');
        await current.exited;
        current = run('naive-server.js', [String(port)], marks);
        await current.next('serving');
        marks.push({ event: 'took', t: epochMs() });
      },
      async stop() {
        current.child.kill('SIGTERM');
        await current.exited;
      },
    };
  }
  const primary = run('cluster-server.js', [String(port), '1'], marks);
  await primary.next('serving');
  return {
    marks,
    async restart() {
      primary.child.kill('SIGHUP');
      await primary.next('restarted');
      const t = epochMs();
      marks.push({ event: 'took', t }, { event: 'draining', t });
    },
    async stop() {
      primary.child.kill('SIGTERM');
      await primary.exited;
    },
  };
}
