// The fd round trip through Node core: child_process.fork + child.send(msg, server). Node passes one
// handle per message and waits for the child's acknowledgement before it sends the next one, so a
// message of K fds is K sends. Node's IPC channel is always a stream socket.
// Node's fastest pattern sends each handle from the previous send's callback (chained): a burst of
// sends without waiting is quadratic inside Node (its queue of pending handle messages is re-scanned
// on every acknowledgement): 20,000 handles took 21 s in one burst, under 1.3 s chained.
//   node rt-node.js <K> <N>          (NODE_PATTERN=burst for the burst form)
// The child closes every server it receives and acknowledges the end with its peak RSS.
// Prints one JSON line with the timings.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';

interface Report {
  event: string;
  maxrss_kb?: number;
}

async function child(k: number, n: number): Promise<void> {
  let handles = 0;
  process.on('message', (_m: unknown, handle?: net.Server) => {
    if (handle === undefined) return;
    handle.close();
    if (++handles === n * k) process.send!({ event: 'ack', maxrss_kb: process.resourceUsage().maxRSS });
  });
  process.send!({ event: 'ready' });
  await once(process, 'disconnect');
}

async function parent(k: number, n: number): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const c = fork(__filename, ['child', String(k), String(n)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = once(c, 'exit');
  const next = (event: string): Promise<Report> =>
    new Promise((resolve) => {
      const on = (m: Report): void => {
        if (m.event !== event) return;
        c.off('message', on);
        resolve(m);
      };
      c.on('message', on);
    });
  await next('ready');
  const ack = next('ack');
  const t0 = process.hrtime.bigint();
  if (process.env.NODE_PATTERN === 'burst') {
    // Node queues handle sends itself and sends the next one when the child acknowledged the last.
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) c.send({ i, j }, server);
  } else {
    await new Promise<void>((resolve, reject) => {
      let sent = 0;
      const sendNext = (err: Error | null = null): void => {
        if (err) {
          reject(err);
          return;
        }
        if (sent === n * k) {
          resolve();
          return;
        }
        const msg = { i: Math.floor(sent / k), j: sent % k };
        sent++;
        c.send(msg, server, sendNext);
      };
      sendNext();
    });
  }
  const report = await ack;
  const t1 = process.hrtime.bigint();
  c.disconnect();
  server.close();
  await exited;
  process.stdout.write(
    `${JSON.stringify({ elapsed_ns: Number(t1 - t0), sender_maxrss_kb: process.resourceUsage().maxRSS, receiver_maxrss_kb: report.maxrss_kb })}\n`,
  );
}

const args = process.argv.slice(2);
const run = args[0] === 'child' ? child(Number(args[1]), Number(args[2])) : parent(Number(args[0]), Number(args[1]));
run.catch((err) => {
  console.error(err);
  process.exit(1);
});
