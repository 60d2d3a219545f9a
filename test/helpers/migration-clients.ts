// Clients of the connection-migration tests, written by hand so that every byte is seen: one TCP or
// Unix connection each, never reconnected, so a test can tell "served elsewhere" from "closed".
import * as net from 'node:net';

/** A client of the fixtures' line protocol: one TCP or Unix connection, answers read line by line. */
export class LineClient {
  readonly socket: net.Socket;
  closed = false;
  #lines: string[] = [];
  #waiting: Array<(line: string) => void> = [];
  #buffer = '';

  constructor(where: number | string) {
    this.socket = typeof where === 'number' ? net.connect(where, '127.0.0.1') : net.connect(where);
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => {
      this.#buffer += d;
      for (let i = this.#buffer.indexOf('\n'); i >= 0; i = this.#buffer.indexOf('\n')) {
        const line = this.#buffer.slice(0, i);
        this.#buffer = this.#buffer.slice(i + 1);
        const w = this.#waiting.shift();
        if (w) w(line);
        else this.#lines.push(line);
      }
    });
    this.socket.on('close', () => (this.closed = true));
  }

  connected(): Promise<void> {
    return new Promise((resolve, reject) => this.socket.once('connect', resolve).once('error', reject));
  }

  next(): Promise<string> {
    const l = this.#lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((resolve) => this.#waiting.push(resolve));
  }

  async ask(text: string): Promise<string> {
    this.socket.write(text);
    return this.next();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const closed = new Promise((resolve) => this.socket.once('close', resolve));
    this.socket.end();
    await closed;
  }
}

/** One HTTP/1.1 client connection written by hand: requests (pipelined or not) and the answers' bodies. */
export class RawHttp {
  readonly socket: net.Socket;
  closed = false;
  bodies: string[] = [];
  #text = '';
  #waiting: Array<() => void> = [];

  constructor(where: number | string) {
    this.socket = typeof where === 'number' ? net.connect(where, '127.0.0.1') : net.connect(where);
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => {
      this.#text += d;
      // Each answer: headers, then a body of Content-Length bytes.
      for (;;) {
        const end = this.#text.indexOf('\r\n\r\n');
        if (end < 0) break;
        const length = Number(/content-length: (\d+)/i.exec(this.#text.slice(0, end))?.[1] ?? 0);
        if (this.#text.length < end + 4 + length) break;
        this.bodies.push(this.#text.slice(end + 4, end + 4 + length));
        this.#text = this.#text.slice(end + 4 + length);
      }
      for (const w of this.#waiting.splice(0)) w();
    });
    this.socket.on('close', () => (this.closed = true));
  }

  connected(): Promise<void> {
    return new Promise((resolve, reject) => this.socket.once('connect', resolve).once('error', reject));
  }

  /** Resolves once `n` answers in all have arrived. */
  async answers(n: number): Promise<string[]> {
    while (this.bodies.length < n) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return this.bodies;
  }

  /** Sends one GET and returns its answer's body. */
  async get(path = '/'): Promise<string> {
    const n = this.bodies.length + 1;
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    return (await this.answers(n))[n - 1]!;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const closed = new Promise((resolve) => this.socket.once('close', resolve));
    this.socket.end();
    await closed;
  }
}
