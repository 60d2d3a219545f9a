// One HTTP GET on a new connection (no keep-alive agent): resolves with the body of a 200 response
// once the client socket is closed too (so a test's leak check never sees it), rejects on any other
// status or socket error.
import * as assert from 'node:assert/strict';
import * as http from 'node:http';

export function get(port: number, path = '/', host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
        if (res.socket.destroyed) resolve(body);
        else res.socket.once('close', () => resolve(body));
      });
    });
    req.on('error', reject);
  });
}

export interface Load {
  /** Stops issuing requests; resolves with the tally once every worker finished its last request. */
  stop(): Promise<LoadResult>;
  /** How many requests were answered 200 so far. */
  served(): number;
}

export interface LoadResult {
  ok: number;
  errors: string[];
  /** Answers by body prefix ("old 123" -> count), to see who served. */
  bodies: Map<string, number>;
}

/**
 * `workers` clients each sending requests back to back until stop() (or `maxSeconds`, default 30):
 * over keep-alive connections (one per worker, reused, as wrk does) or a new connection per request.
 */
// Loads not stopped yet: the root hooks stop what a failing test left running, so its clients do not
// keep opening sockets into the next tests (one failure under load once failed 29 tests after it).
const running = new Set<Load>();

/** Stops every load a test left running; returns how many there were. */
/** Fails unless a load was served without a failed request. */
export function noErrors(r: LoadResult, what: string): void {
  assert.deepEqual(r.errors.slice(0, 10), [], `${what}: ${r.errors.length} failed requests`);
  assert.ok(r.ok > 0, `${what}: no request was served`);
}

export async function stopLoads(): Promise<number> {
  const left = [...running];
  await Promise.all(left.map((l) => l.stop()));
  return left.length;
}

export function load(port: number, opts: { workers: number; keepAlive: boolean; maxSeconds?: number }): Load {
  const agent = opts.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: opts.workers }) : undefined;
  const result: LoadResult = { ok: 0, errors: [], bodies: new Map() };
  let active = true;
  // Bounded in time even when nothing calls stop(): the loop ends by itself.
  const bound = setTimeout(() => (active = false), (opts.maxSeconds ?? 30) * 1000);
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: agent ?? false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          if (res.statusCode === 200) {
            result.ok++;
            result.bodies.set(body, (result.bodies.get(body) ?? 0) + 1);
          } else {
            result.errors.push(`status ${res.statusCode}`);
          }
          resolve();
        });
      });
      req.on('error', (err: Error & { code?: string }) => {
        result.errors.push(err.code ?? err.message);
        resolve();
      });
    });
  const workers = Array.from({ length: opts.workers }, async () => {
    while (active) await one();
  });
  const handle: Load = {
    served: () => result.ok,
    async stop() {
      active = false;
      clearTimeout(bound);
      await Promise.all(workers);
      agent?.destroy();
      running.delete(handle);
      return result;
    },
  };
  running.add(handle);
  return handle;
}

/** Runs `count` GETs, `concurrency` at a time; returns how many each server (the first word of its
 * answer) served, and the failures. */
export async function whoServes(
  port: number,
  count: number,
  concurrency: number,
): Promise<{ served: Map<string, number>; errors: string[] }> {
  const served = new Map<string, number>();
  const errors: string[] = [];
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < count) {
      started++;
      try {
        const who = (await get(port)).split(' ')[0]!;
        served.set(who, (served.get(who) ?? 0) + 1);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { served, errors };
}
