// Restart strategies compared by bench/handoff: each starts a server on a port and
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
  /** What the processes said about their connections; complete once stop() has resolved. */
  readonly connections: ConnectionCounts;
}

/** Connections as the server processes count them, summed over every process of a deployment. */
export interface ConnectionCounts {
  /**
   * Connections accepted from clients (each process's listener, moved-in connections not counted):
   * how many the clients opened. undefined when a process has not said (yet), or could not.
   */
  readonly accepted: number | undefined;
  /** fdpass with `migrate`: where the old processes' connections went at their hand-offs. */
  readonly migrated: number;
  readonly failed: number;
  readonly drained: number;
}

// Sums the processes' 'accepted' and 'drained' lines; `started` counts the processes that should report.
class Tally implements ConnectionCounts {
  started = 0;
  #reports = 0;
  #accepted: number | null = 0;
  migrated = 0;
  failed = 0;
  drained = 0;

  get accepted(): number | undefined {
    return this.#reports === this.started && this.#accepted !== null ? this.#accepted : undefined;
  }

  add(e: { event?: string; connections?: number | null; counts?: { migrated: number; failed: number; drained: number } }): void {
    if (e.event === 'accepted') {
      this.#reports++;
      this.#accepted = e.connections == null || this.#accepted === null ? null : this.#accepted + e.connections;
    } else if (e.event === 'drained' && e.counts) {
      this.migrated += e.counts.migrated;
      this.failed += e.counts.failed;
      this.drained += e.counts.drained;
    }
  }
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
// 'draining' after nobody waits on it any more), notes every 'took' and 'draining' in `marks` and the
// connection counts in `tally`. `exited` waits for its stdout to close too (cluster workers share it),
// so that every line has been read by then.
function run(script: string, args: string[], marks: RestartMark[], tally: Tally, env?: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    ...(env === undefined ? {} : { env: { ...process.env, ...env } }),
  });
  const events: string[] = [];
  let ended = false;
  let wake = (): void => {};
  readline
    .createInterface({ input: child.stdout! })
    .on('line', (line) => {
      const e = JSON.parse(line) as { event?: string; t?: number; connections?: number | null };
      if (e.event === 'took' || e.event === 'draining') marks.push({ event: e.event, t: e.t ?? epochMs() });
      tally.add(e);
      events.push(e.event ?? '');
      wake();
    })
    .on('close', () => {
      ended = true;
      wake();
    });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
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

/**
 * For the fdpass method: the server's protocol, its TLS key and certificate files for https/http2, and
 * whether its keep-alive connections move to the next process at a hand-off (`migrate`) instead of
 * being drained.
 */
export interface ServerKind {
  kind: 'http' | 'https' | 'http2';
  key?: string;
  cert?: string;
  migrate?: boolean;
}

// Only the fdpass method serves https and http2 here; the others serve plain http.
export async function deploy(method: Method, port: number, control: string, server: ServerKind = { kind: 'http' }): Promise<Deployment> {
  const marks: RestartMark[] = [];
  const tally = new Tally();
  const start = (script: string, args: string[], env?: NodeJS.ProcessEnv): Proc => {
    tally.started++;
    return run(script, args, marks, tally, env);
  };
  if (method === 'fdpass') {
    const args = [String(port), control, server.kind, ...(server.key && server.cert ? [server.key, server.cert] : [])];
    const env = { MIGRATE: server.migrate ? '1' : '0' };
    let current = start('hot-restart-server.js', args, env);
    await current.next('serving');
    const retired: Promise<void>[] = [];
    return {
      marks,
      connections: tally,
      async restart() {
        const next = start('hot-restart-server.js', args, env);
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
    let current = start('naive-server.js', [String(port)]);
    await current.next('serving');
    return {
      marks,
      connections: tally,
      async restart() {
        marks.push({ event: 'draining', t: epochMs() });
        current.child.kill('SIGTERM');
        await current.exited;
        current = start('naive-server.js', [String(port)]);
        await current.next('serving');
        marks.push({ event: 'took', t: epochMs() });
      },
      async stop() {
        current.child.kill('SIGTERM');
        await current.exited;
      },
    };
  }
  const primary = run('cluster-server.js', [String(port), '1'], marks, tally);
  tally.started++; // its one worker reports, not the primary
  await primary.next('serving');
  return {
    marks,
    connections: tally,
    async restart() {
      tally.started++;
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
