// The fd round trip through fdpass's public API, as an application would write it.
//   node rt-fdpass.js <seqpacket|stream> <K> <N> [best|baseline] [soak]
// The sender (this process) listens on a TCP port, makes a socketPair and spawns the receiver with the
// other end as its fd 3. The receiver announces itself, then closes every fd of every message and
// acknowledges the last one with its own peak RSS. Time runs from the first send to that ack.
// The API used is the best the installed fdpass has ('best', the default), or with 'baseline' the one
// fdpass 0.1.0 had, so that one script measures before and after (RT_SEND=write|send and
// RT_CLOSE=closeFds|closeFd pick each side's API on their own):
//   sender    writeMany: `if (!channel.writeMany(batch)) await once(channel, 'drain')`, 32 messages a
//                    batch (one sendmmsg when the kernel takes them all; RT_BATCH=n for another size)
//             write: `if (!channel.write(msg)) await once(channel, 'drain')` (Node's backpressure idiom)
//             send:  `await channel.send(msg)` per message (a promise per message)
//   receiver  closeFds: `closeFds(m.fds)` (one native call per message)
//             closeFd:  `for (const fd of m.fds) closeFd(fd)`
// With 'soak', both sides report RSS and fd count after the first 10 % of the messages and at the end.
// Prints one JSON line with the timings.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as fdpass from 'fdpass';
import { closeFd, fdOf, openChannel, socketPair, type Channel, type Message, type SocketKind } from 'fdpass';

interface Writable {
  write(msg: { data?: Buffer; fds?: number[] }): boolean;
  writeMany?(msgs: Array<{ data?: Buffer; fds?: number[] }>): boolean;
}

// writeMany's batch in the bench (RT_BATCH): by default as many messages as one sendmmsg of fdpass
// carries.
const BATCH = Number(process.env.RT_BATCH ?? 32);

// What this fdpass offers (the same script runs against versions without write() or closeFds()).
const closeFdsApi = (fdpass as { closeFds?: (fds: readonly number[]) => void }).closeFds;

function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length - 1; // minus readdir's own fd
}

function maxRssKb(): number {
  return process.resourceUsage().maxRSS;
}

function snapshot(): { rss_kb: number; fds: number } {
  return { rss_kb: Math.round(process.memoryUsage.rss() / 1024), fds: fdCount() };
}

function hasWrite(ch: Channel): boolean {
  return typeof (ch as unknown as Partial<Writable>).write === 'function';
}

async function receiver(type: SocketKind, k: number, n: number, baseline: boolean, soak: boolean): Promise<void> {
  const ch = openChannel(3);
  const useCloseFds = process.env.RT_CLOSE ? process.env.RT_CLOSE === 'closeFds' : !baseline;
  const closeAll =
    useCloseFds && closeFdsApi !== undefined
      ? closeFdsApi
      : (fds: readonly number[]) => {
          for (const fd of fds) closeFd(fd);
        };
  const checkpoint = Math.floor(n / 10);
  let msgs = 0;
  let bytes = 0;
  let fds = 0;
  let early: { rss_kb: number; fds: number } | undefined;
  let snapshotPending = false;
  const done = new Promise<void>((resolve, reject) => {
    ch.on('message', (m: Message) => {
      closeAll(m.fds);
      fds += m.fds.length;
      bytes += m.data.length;
      msgs = type === 'stream' ? Math.floor(bytes / 8) : msgs + 1;
      if (soak && !snapshotPending && msgs >= checkpoint) {
        // Measured once this batch is delivered: the batch's later messages still hold their fds.
        snapshotPending = true;
        setImmediate(() => (early = snapshot()));
      }
      if (msgs === n) resolve();
    });
    ch.on('error', reject);
    ch.on('end', () => reject(new Error('receiver: the sender closed early')));
  });
  await ch.send({ data: Buffer.from('ready!!!') });
  await done;
  if (fds !== n * k) throw new Error(`receiver: got ${fds} fds, expected ${n * k}`);
  const report = {
    maxrss_kb: maxRssKb(),
    close: closeAll === closeFdsApi ? 'closeFds' : 'closeFd',
    early,
    end: soak ? snapshot() : undefined,
  };
  const ack = Buffer.from(JSON.stringify(report));
  await ch.send({ data: ack });
  await new Promise<void>((resolve) => ch.once('close', resolve));
}

async function sender(type: SocketKind, k: number, n: number, baseline: boolean, soak: boolean): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const lfd = fdOf(server);
  const [ch, theirs] = socketPair({ type });
  const child = spawn(
    process.execPath,
    [__filename, 'receiver', type, String(k), String(n), baseline ? 'baseline' : 'best', soak ? 'soak' : ''],
    {
      stdio: ['ignore', 'inherit', 'inherit', theirs.fd],
    },
  );
  theirs.destroy(); // the child has its own copy now
  const exited = once(child, 'exit');

  const ready = await ch.receive();
  if (ready.data.toString() !== 'ready!!!') throw new Error('sender: bad ready message');

  const data = Buffer.from('payload!'); // 8 bytes
  const fds = new Array<number>(k).fill(lfd);
  const msg = { data, fds };
  const checkpoint = Math.floor(n / 10);
  let early: { rss_kb: number; fds: number } | undefined;
  const w = ch as unknown as Writable;
  const wanted = process.env.RT_SEND ?? (baseline ? 'send' : 'writeMany');
  const useWriteMany = wanted === 'writeMany' && typeof w.writeMany === 'function';
  const useWrite = (useWriteMany || wanted === 'write') && hasWrite(ch);

  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  if (useWriteMany) {
    const batch = new Array<typeof msg>(BATCH).fill(msg);
    for (let i = 0; i < n; i += BATCH) {
      const chunk = n - i >= BATCH ? batch : batch.slice(0, n - i);
      if (!w.writeMany!(chunk)) await once(ch, 'drain');
      if (soak && i < checkpoint && i + BATCH >= checkpoint) {
        if ((ch as unknown as { writableNeedDrain?: boolean }).writableNeedDrain) await once(ch, 'drain');
        early = snapshot();
      }
    }
  } else if (useWrite) {
    for (let i = 0; i < n; i++) {
      if (!w.write(msg)) await once(ch, 'drain');
      if (soak && i + 1 === checkpoint) {
        if ((ch as unknown as { writableLength?: number }).writableLength) await once(ch, 'drain');
        early = snapshot();
      }
    }
  } else {
    for (let i = 0; i < n; i++) {
      await ch.send(msg);
      if (soak && i + 1 === checkpoint) early = snapshot();
    }
  }
  // Stream chunks may in principle split a write; the ack is the receiver's only message, so gather it.
  let ackText = '';
  for (;;) {
    ackText += (await ch.receive()).data.toString();
    try {
      JSON.parse(ackText);
      break;
    } catch {
      // more to come
    }
  }
  const t1 = process.hrtime.bigint();
  const cpu = process.cpuUsage(cpu0);
  const end = soak ? snapshot() : undefined;
  const receiverReport = JSON.parse(ackText) as { maxrss_kb: number; close: string; early?: unknown; end?: unknown };
  await ch.close();
  server.close();
  await exited;
  process.stdout.write(
    `${JSON.stringify({
      elapsed_ns: Number(t1 - t0),
      sender_cpu_us: cpu.user + cpu.system,
      mode: `${useWriteMany ? 'writeMany' : useWrite ? 'write' : 'send'}+${receiverReport.close}`,
      sender_maxrss_kb: maxRssKb(),
      receiver_maxrss_kb: receiverReport.maxrss_kb,
      ...(soak ? { sender: { early, end }, receiver: { early: receiverReport.early, end: receiverReport.end } } : {}),
    })}\n`,
  );
}

const args = process.argv.slice(2);
const baseline = args.includes('baseline');
const run =
  args[0] === 'receiver'
    ? receiver(args[1] as SocketKind, Number(args[2]), Number(args[3]), baseline, args.includes('soak'))
    : sender(args[0] as SocketKind, Number(args[1]), Number(args[2]), baseline, args.includes('soak'));
run.catch((err) => {
  console.error(err);
  process.exit(1);
});
