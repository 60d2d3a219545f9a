// The supervisor's log, on stderr. Logging must never stop the supervisor: a reader that went away
// (EPIPE on a pipe, EIO on a hung-up terminal) or a write that throws (a file-type stderr opened
// non-blocking: EAGAIN) costs log lines, not the process. Past BACKLOG bytes queued (a stderr written
// asynchronously), lines are dropped and counted. Not solved here: Node writes stdio pipes and
// sockets synchronously on Linux, so a reader that stops reading blocks the loop once the pipe is full.

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
