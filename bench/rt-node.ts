// The fd round trip through Node core: child_process.fork + child.send(msg, server). Node passes one
// handle per message and waits for the child's acknowledgement before it sends the next one, so a
// message of K fds is K sends. Node's IPC channel is always a stream socket.
//   node rt-node.js <K> <N>
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
  for (let i = 0; i < n; i++) {
    // Node queues handle sends itself and sends the next one when the child acknowledged the last.
    for (let j = 0; j < k; j++) c.send({ i, j }, server);
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
