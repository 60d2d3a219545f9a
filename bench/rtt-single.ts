// A single message's round trip: one message of 8 bytes with one descriptor goes to an echo process,
// which closes the descriptor it got and answers with 8 bytes; the next message leaves only once the
// answer is in, so every message is written alone (no batch ever forms). Measures what batching must
// not cost: the latency of a lone write.
//   node rtt-single.js <seqpacket|stream> <N>
// Prints one JSON line: {"p50_us":..,"p99_us":..,"n":..} (after N/10 warm-up round trips).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';
import { closeFds, fdOf, openChannel, socketPair, type SocketKind } from 'fdpass';

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function echo(): Promise<void> {
  const ch = openChannel(3);
  const answer = { data: Buffer.from('answer!!') };
  ch.on('message', (m) => {
    closeFds(m.fds);
    ch.write(answer);
  });
  await once(ch, 'close');
}

async function measure(type: SocketKind, n: number): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const [ch, theirs] = socketPair({ type });
  const child = spawn(process.execPath, [__filename, 'echo'], { stdio: ['ignore', 'inherit', 'inherit', theirs.fd] });
  theirs.destroy();
  const exited = once(child, 'exit');
  const msg = { data: Buffer.from('payload!'), fds: [fdOf(server)] };
  const warmup = Math.floor(n / 10);
  const times = new Float64Array(n);
  for (let i = 0; i < warmup + n; i++) {
    const t0 = process.hrtime.bigint();
    ch.write(msg);
    await ch.receive();
    const t1 = process.hrtime.bigint();
    if (i >= warmup) times[i - warmup] = Number(t1 - t0) / 1000;
  }
  await ch.close();
  server.close();
  await exited;
  times.sort();
  process.stdout.write(`${JSON.stringify({ p50_us: percentile(times, 0.5), p99_us: percentile(times, 0.99), n })}\n`);
}

const args = process.argv.slice(2);
const run = args[0] === 'echo' ? echo() : measure(args[0] as SocketKind, Number(args[1] ?? 20000));
run.catch((err) => {
  console.error(err);
  process.exit(1);
});
