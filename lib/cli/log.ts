// The supervisor's log, on stderr. Logging must never stop the supervisor: a reader that went away
// (EPIPE on a pipe, EIO on a hung-up terminal) or a write that throws (a file-type stderr opened
// non-blocking: EAGAIN) costs log lines, not the process. Nor may a reader that stopped reading
// block the event loop or grow memory: a pipe stderr is written through libuv without blocking, and
// past BACKLOG bytes queued, lines are dropped and counted.

const BACKLOG = 64 * 1024;

/** A `log(line)` that writes `${prefix}${line}\n` to stderr and never throws. */
export function stderrLog(prefix: string): (line: string) => void {
  const out = process.stderr;
  let gone = false;
  let dropped = 0;
  out.on('error', () => {
    gone = true; // the stream is destroyed: nothing more can be written
  });
  return (line) => {
    if (gone || out.destroyed) return;
    if (out.writableLength > BACKLOG) {
      dropped++;
      return;
    }
    let text = `${prefix}${line}\n`;
    if (dropped > 0) text = `${prefix}${dropped} log line(s) dropped: stderr was not read\n${text}`;
    try {
      out.write(text);
      dropped = 0;
    } catch {
      dropped++;
    }
  };
}
