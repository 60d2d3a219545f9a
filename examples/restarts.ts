// Restart strategies compared by the demo and by bench/handoff: each starts a server on a port and
// replaces its process(es) on request.
//   fdpass   the new process takes the listener from the old one (hand-off); no gap
//   naive    the old process closes and exits, then the new one binds; connections in between fail
//   cluster  Node's cluster: a new worker is forked, the old one disconnected; the primary stays
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

export type Method = 'fdpass' | 'naive' | 'cluster';

export interface Deployment {
  /** Replaces the serving process(es); resolves once the replacement serves. */
  restart(): Promise<void>;
  /** Stops everything and waits for every process to exit. */
  stop(): Promise<void>;
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  next(event: string): Promise<void>;
}

function run(script: string, args: string[]): Proc {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    exited,
    async next(event) {
      for (;;) {
        const r = await lines.next();
        if (r.done) throw new Error(`${script} (pid ${child.pid}) exited before '${event}'`);
        if ((JSON.parse(r.value) as { event?: string }).event === event) return;
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
  if (method === 'fdpass') {
    const args = [String(port), control, server.kind, ...(server.key && server.cert ? [server.key, server.cert] : [])];
    let current = run('hot-restart-server.js', args);
    await current.next('serving');
    const retired: Promise<void>[] = [];
    return {
      async restart() {
        const next = run('hot-restart-server.js', args);
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
    let current = run('naive-server.js', [String(port)]);
    await current.next('serving');
    return {
      async restart() {
        current.child.kill('SIGTERM');
        await current.exited;
        current = run('naive-server.js', [String(port)]);
        await current.next('serving');
      },
      async stop() {
        current.child.kill('SIGTERM');
        await current.exited;
      },
    };
  }
  const primary = run('cluster-server.js', [String(port), '1']);
  await primary.next('serving');
  return {
    async restart() {
      primary.child.kill('SIGHUP');
      await primary.next('restarted');
    },
    async stop() {
      primary.child.kill('SIGTERM');
      await primary.exited;
    },
  };
}
