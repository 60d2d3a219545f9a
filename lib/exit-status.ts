// How a child process ended, as Node's 'exit' event reports it: the type, its words for a log, and the
// status a shell would give it.
import * as os from 'node:os';

/** A child's end: its exit code, or the signal that killed it (the other one null). */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** 'exited with code N' or 'was killed by SIGNAL'. */
export function exitText(exit: ExitStatus): string {
  return exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/** The shell's status: the code, or 128 + the signal's number; 0 for none. */
export function exitStatus(exit: ExitStatus | undefined): number {
  if (exit === undefined) return 0;
  if (exit.signal !== null) return 128 + (os.constants.signals[exit.signal] ?? 0);
  return exit.code ?? 0;
}
