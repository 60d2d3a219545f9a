// Warming a fresh process before it takes traffic. A new generation's V8 runs the request path
// interpreted and its connection setup cold, so the first real clients to reach it wait on it: 64
// keep-alive clients moving to a cold successor at once waited 120–210 ms for their first response
// (bench:handoff with LATENCY=1). warmUp() sends the server requests first, over private socket pairs
// injected with server.emit('connection') (Node's documented way to hand a server a connection), so
// they run through the server's own TLS, HTTP and handler code, and no port or other process is involved.
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { isHttp1, isHttp2 } from './http-kind';
import { binding } from './native';
import { invalidArgType, invalidArgValue, validateInteger, validateObject, validateString } from './validate';
import { waitWith } from './wait';

export interface WarmUpOptions {
  /** Requests to send in all. Default 500; 1 to 1,000,000. */
  requests?: number;
  /**
   * Requests on each connection before it closes and the next one opens: accepting and setting up a
   * connection is cold code too. Default 4; 1 to 1,000,000.
   */
  requestsPerConnection?: number;
  /** Connections open at once. Default 2; 1 to 64. */
  concurrency?: number;
  /**
   * ms to wait after each response before the next request on that connection. The warm-up takes CPU
   * that the process still serving (the old generation) would otherwise have; pacing it keeps that
   * process's latency tail down, at the cost of a longer warm-up. Default 1; 0 to 1000.
   */
  pace?: number;
  /** Path of the GET requests: pick a cheap route that runs your stack, with no side effects. Default '/'. */
  path?: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Reject with ERR_FDPASS_TIMEOUT (every warm-up connection closed) after this many ms. Default 30,000. */
  timeout?: number;
}

export interface WarmUpResult {
  /** Requests that got a response. */
  requests: number;
  /** Connections opened. */
  connections: number;
  /** Responses by status code, e.g. { '200': 500 }: a warm-up that got only 404s warmed little. */
  statuses: Record<string, number>;
  /** How long it took, in ms. */
  ms: number;
}

type Protocol = 'http1' | 'http2';

function protocolOf(server: unknown): Protocol {
  if (server instanceof net.Server) {
    if (isHttp2(server)) return 'http2';
    if (isHttp1(server)) return 'http1';
  }
  throw invalidArgType('server', 'an http.Server, https.Server, or http2 server', server);
}

function isSecure(server: net.Server): boolean {
  return typeof (server as Partial<tls.Server>).setSecureContext === 'function';
}

interface Settings {
  requests: number;
  perConnection: number;
  concurrency: number;
  pace: number;
  path: string;
  headers: Record<string, string>;
  timeout: number;
}

function settings(opts: WarmUpOptions): Settings {
  validateObject(opts as unknown, 'options');
  const int = (name: keyof WarmUpOptions, dflt: number, min: number, max: number): number => {
    const v = opts[name];
    if (v === undefined) return dflt;
    validateInteger(v, `options.${name}`, min, max);
    return v;
  };
  const s: Settings = {
    requests: int('requests', 500, 1, 1_000_000),
    perConnection: int('requestsPerConnection', 4, 1, 1_000_000),
    concurrency: int('concurrency', 2, 1, 64),
    pace: int('pace', 1, 0, 1000),
    timeout: int('timeout', 30_000, 1, 2 ** 31 - 1),
    path: opts.path ?? '/',
    headers: {},
  };
  validateString(s.path, 'options.path');
  if (!s.path.startsWith('/')) throw invalidArgValue('options.path', s.path, "must start with '/'");
  if (opts.headers !== undefined) {
    validateObject(opts.headers as unknown, 'options.headers');
    for (const [name, value] of Object.entries(opts.headers)) validateString(value, `options.headers['${name}']`);
    s.headers = { ...opts.headers };
  }
  return s;
}

/** A connected pair of Unix stream sockets: [the server's end, the client's end]. */
function socketPairEnds(): [net.Socket, net.Socket] {
  const [a, b] = binding.socketPair(binding.constants.SOCK_STREAM);
  // net.Socket owns each fd from here (closes it on destroy); if wrapping b throws, a is owned already.
  const server = new net.Socket({ fd: a, readable: true, writable: true });
  try {
    return [server, new net.Socket({ fd: b, readable: true, writable: true })];
  } catch (err) {
    server.destroy();
    binding.close(b);
    throw err;
  }
}

/** One warm-up connection's client: sends `count` requests one after another, counting the answers in `statuses`. */
type Client = (socket: net.Socket, count: number, s: Settings, statuses: Record<string, number>) => Promise<void>;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const http1Client =
  (secure: boolean): Client =>
  async (socket, count, s, statuses) => {
    const httpModule: typeof http = require('node:http');
    const stream: net.Socket = secure ? (require('node:tls') as typeof tls).connect({ socket, rejectUnauthorized: false }) : socket;
    // An agent of one keep-alive connection: the pair's client end.
    const agent = new httpModule.Agent({ keepAlive: true, maxSockets: 1 });
    (agent as unknown as { createConnection: () => net.Socket }).createConnection = () => stream;
    try {
      for (let i = 0; i < count; i++) {
        if (i > 0 && s.pace > 0) await sleep(s.pace);
        const status = await new Promise<number>((resolve, reject) => {
          const req = httpModule.request({ agent, path: s.path, headers: { host: 'fdpass-warm-up', ...s.headers } }, (res) => {
            res.resume();
            res.once('end', () => resolve(res.statusCode ?? 0));
            res.once('error', reject);
          });
          req.once('error', reject);
          req.end();
        });
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    } finally {
      agent.destroy();
      stream.destroy();
    }
  };

const http2Client =
  (secure: boolean): Client =>
  async (socket, count, s, statuses) => {
    const h2: typeof http2 = require('node:http2');
    const session = h2.connect(secure ? 'https://fdpass-warm-up' : 'http://fdpass-warm-up', {
      createConnection: () =>
        secure ? (require('node:tls') as typeof tls).connect({ socket, ALPNProtocols: ['h2'], rejectUnauthorized: false }) : socket,
    });
    const failed = new Promise<never>((_, reject) => session.once('error', reject));
    failed.catch(() => {}); // observed through the race below
    try {
      for (let i = 0; i < count; i++) {
        if (i > 0 && s.pace > 0) await sleep(s.pace);
        const stream = session.request({ ':path': s.path, ...s.headers }, { endStream: true });
        const status = await Promise.race([
          failed,
          new Promise<number>((resolve, reject) => {
            let code = 0;
            stream.once('response', (headers) => (code = Number(headers[':status'])));
            stream.once('error', reject);
            stream.once('close', () => (code ? resolve(code) : reject(new Error(`warm-up stream closed with code ${stream.rstCode}`))));
            stream.resume();
          }),
        ]);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    } finally {
      session.destroy();
      socket.destroy();
    }
  };

/**
 * Sends `server` requests through its own code before it takes real traffic. TLS, the HTTP parser
 * and your handlers get compiled, so that the first clients to reach a new process do not wait on
 * its cold JIT. Call it after the
 * server is set up and before telling anyone it is ready: before `Inheritance.ready()` in a
 * hand-off, before `notify({ ready: true })` under systemd or `fdpass run`. The server needs no
 * listener: the requests come over private socket pairs. For HTTP/1.x (`http`, `https`) and HTTP/2
 * (`http2.createServer`, `http2.createSecureServer`) servers; TLS certificates are not checked.
 *
 * Resolves with what the server answered (non-2xx answers do not fail it: look at `statuses`); rejects
 * with the first failed request's error, or ERR_FDPASS_TIMEOUT after `timeout`, with every warm-up
 * connection closed.
 */
export async function warmUp(server: net.Server, opts: WarmUpOptions = {}): Promise<WarmUpResult> {
  const protocol = protocolOf(server);
  const s = settings(opts);
  const client = (protocol === 'http2' ? http2Client : http1Client)(isSecure(server));
  const started = Date.now();
  const statuses: Record<string, number> = {};
  const open = new Set<net.Socket>();
  let left = s.requests;
  let connections = 0;
  let stopped = false;

  const worker = async (): Promise<void> => {
    while (left > 0 && !stopped) {
      const count = Math.min(left, s.perConnection);
      left -= count;
      const [serverEnd, clientEnd] = socketPairEnds();
      open.add(serverEnd).add(clientEnd);
      connections++;
      try {
        server.emit('connection', serverEnd);
        await client(clientEnd, count, s, statuses);
      } finally {
        serverEnd.destroy();
        clientEnd.destroy();
        open.delete(serverEnd);
        open.delete(clientEnd);
      }
    }
  };

  try {
    await waitWith<void>(
      'warm-up',
      { timeout: s.timeout },
      (resolve, reject) => void Promise.all(Array.from({ length: s.concurrency }, worker)).then(() => resolve(), reject),
      () => {}, // the finally below stops the workers and closes their sockets
    );
  } finally {
    stopped = true;
    for (const socket of open) socket.destroy();
  }
  const requests = Object.values(statuses).reduce((a, b) => a + b, 0);
  return { requests, connections, statuses, ms: Date.now() - started };
}
