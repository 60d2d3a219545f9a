// npm run soak — HANDOFFS chained hand-offs A -> B -> C ... of bench/apps/hot-restart-server.ts (the
// hand-off recipe), one after the other, under light load (WORKERS clients making new connections,
// PAUSE ms apart). After each hand-off: the old process exited with 0 and was reaped (no zombie), the
// port's listening socket is held by the live process only (`ss -lntp`), and the live process's
// descriptors (other than TCP connections) and RSS are sampled. Prints the curve every EVERY hand-offs
// and a RESULT line; exits 1 on a failed request, a zombie, a stale holder or a descriptor leak.
// Knobs: HANDOFFS (200), WORKERS (2), PAUSE (10), EVERY (20). Takes about 1.5 s per hand-off.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ask, fdCount, freePort, sleep, start, type Generation } from './generations';

const HANDOFFS = Number(process.env.HANDOFFS ?? 200);
const WORKERS = Number(process.env.WORKERS ?? 2);
const PAUSE = Number(process.env.PAUSE ?? 10);
const EVERY = Number(process.env.EVERY ?? 20);

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

// The pids that hold a listening socket on `port`, from ss(8).
function holders(port: number): number[] {
  const out = execFileSync('ss', ['-lntpH', `sport = :${port}`], { encoding: 'utf8' });
  return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-soak-'));
  const control = path.join(dir, 'control.sock');
  const port = await freePort();
  console.log(`soak: ${HANDOFFS} chained hand-offs, ${WORKERS} clients (new connection per request, ${PAUSE} ms apart), port ${port}`);
  const problems: string[] = [];
  let current: Generation = start(port, control);
  await current.serving;
  let ok = 0;
  const failures = new Map<string, number>();
  let loading = true;
  const loadEnd = Date.now() + HANDOFFS * 10_000;
  const clients = Array.from({ length: WORKERS }, async () => {
    while (loading && Date.now() < loadEnd) {
      const r = await ask(port);
      if (r.startsWith('hello from')) ok++;
      else failures.set(r, (failures.get(r) ?? 0) + 1);
      await sleep(PAUSE);
    }
  });
  const first = { fds: fdCount(current.pid), rss: rssMb(current.pid) };
  console.log('\n| hand-off | pid | fds (not connections) | RSS MB | requests ok | failed |');
  console.log('|--:|--:|--:|--:|--:|--:|');
  console.log(`| 0 | ${current.pid} | ${first.fds} | ${first.rss.toFixed(1)} | ${ok} | 0 |`);
  let inheritedFds: number | undefined;
  const started = Date.now();
  for (let n = 1; n <= HANDOFFS; n++) {
    const old = current;
    current = start(port, control);
    try {
      await current.serving;
    } catch (err) {
      problems.push(`hand-off ${n}: ${(err as Error).message}\n${current.stderr.slice(-2000)}`);
      break;
    }
    const end = await Promise.race([old.exited, sleep(15_000).then(() => null)]);
    if (end === null || end.code !== 0) problems.push(`hand-off ${n}: pid ${old.pid} ended with ${JSON.stringify(end)}`);
    if (fs.existsSync(`/proc/${old.pid}`)) problems.push(`hand-off ${n}: pid ${old.pid} is still in the process table (zombie)`);
    const held = holders(port);
    if (held.some((pid) => pid !== current.pid))
      problems.push(`hand-off ${n}: listener held by ${held.join(', ')}, live pid ${current.pid}`);
    const fds = fdCount(current.pid);
    inheritedFds ??= fds;
    if (fds !== inheritedFds)
      problems.push(`hand-off ${n}: pid ${current.pid} has ${fds} descriptors, the first inheriting generation had ${inheritedFds}`);
    const failed = [...failures.values()].reduce((a, b) => a + b, 0);
    if (n % EVERY === 0 || n === HANDOFFS)
      console.log(`| ${n} | ${current.pid} | ${fds} | ${rssMb(current.pid).toFixed(1)} | ${ok} | ${failed} |`);
    if (problems.length > 0) break;
  }
  const seconds = (Date.now() - started) / 1000;
  loading = false;
  await Promise.all(clients);
  current.child.kill('SIGTERM');
  await current.exited;
  fs.rmSync(dir, { recursive: true, force: true });
  const failed = [...failures].map(([k, v]) => `${k} x${v}`).join(', ') || 'none';
  console.log(`\n${HANDOFFS} hand-offs in ${seconds.toFixed(0)} s; requests ok ${ok}, failed: ${failed}`);
  console.log(
    `RESULT handoffs=${HANDOFFS} ok=${ok} failed=${[...failures.values()].reduce((a, b) => a + b, 0)} problems=${problems.length}`,
  );
  for (const p of problems) console.log(`PROBLEM ${p}`);
  if (problems.length > 0 || failures.size > 0) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
