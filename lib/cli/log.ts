// The supervisor's log, on stderr. Logging must never stop the supervisor: a reader that went away
// (EPIPE on a pipe, EIO on a hung-up terminal) costs log lines, not the process; and a reader that
// stops reading must not block it. Node writes stdio pipes synchronously on Linux, so a full pipe
// would block the event loop, and O_NONBLOCK on fd 2 would reach the generations, who share its open
// file description. So: a pipe or a terminal is opened anew through /proc/self/fd/2 (a description
// of its own, made non-blocking); a socket (journald's stream, Node's stdio 'pipe') is written with
// send(MSG_DONTWAIT); a file (opening it anew would lose O_APPEND) with write(2), which does not
// block for long. Lines that do not fit wait in a queue of at most BACKLOG bytes; past that they are
// dropped and counted.
import * as fs from 'node:fs';
import { binding } from '../native';

const BACKLOG = 64 * 1024;
const RETRY_MS = 50;

// A write(buf) -> bytes written for stderr that never blocks for a reader (see above); throws EAGAIN.
function openLog(): (buf: Buffer) => number {
  try {
    const st = fs.fstatSync(2);
    if (st.isSocket()) return (buf) => binding.sendNoWait(2, buf);
    if (st.isFIFO() || st.isCharacterDevice()) {
      const fd = fs.openSync('/proc/self/fd/2', fs.constants.O_WRONLY | fs.constants.O_NONBLOCK); // libuv adds O_CLOEXEC
      return (buf) => fs.writeSync(fd, buf);
    }
  } catch {
    // no /proc, or fd 2 closed: writes to it fail and are ignored
  }
  return (buf) => fs.writeSync(2, buf);
}

/** A `log(line)` that writes `${prefix}${line}\n` to stderr, never throws and never blocks on a pipe. */
export function stderrLog(prefix: string): (line: string) => void {
  const write = openLog();
  let queue: Buffer[] = [];
  let queued = 0;
  let dropped = 0;
  let gone = false;
  let timer: NodeJS.Timeout | undefined;

  // Writes what is queued; false when the reader is not keeping up (EAGAIN).
  const flush = (): boolean => {
    while (queue.length > 0 && !gone) {
      const head = queue[0]!;
      let n: number;
      try {
        n = write(head);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return false;
        gone = true; // EPIPE, EIO, EBADF: no one will read this log again
        queue = [];
        queued = 0;
        return true;
      }
      queued -= n;
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n); // a line longer than PIPE_BUF, written in part
    }
    return true;
  };
  const schedule = (): void => {
    if (timer !== undefined || gone) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (!flush()) schedule();
    }, RETRY_MS);
    timer.unref(); // the log never keeps the supervisor alive
  };

  return (line) => {
    if (gone) return;
    const text = Buffer.from(`${prefix}${line}\n`);
    if (queued + text.length > BACKLOG) {
      dropped++;
      schedule();
      return;
    }
    if (dropped > 0) {
      const note = Buffer.from(`${prefix}${dropped} log line(s) dropped: stderr was not read\n`);
      queue.push(note);
      queued += note.length;
      dropped = 0;
    }
    queue.push(text);
    queued += text.length;
    if (!flush()) schedule();
  };
}
