// Peers of another user for tests that run as root: test/fixtures/foreign_peer.py as nobody, a
// marker file whose descriptors the stranger sends, and a check that none of them is open here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnJson, type Fixture } from './children';
import { tmpPath } from './tmp';

/** nobody's uid and gid on Debian-like systems. */
export const NOBODY = 65534;

const PEER = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'foreign_peer.py');

/** Runs foreign_peer.py as nobody (`python3` resolved by PATH as nobody can execute it). */
export function asNobody(args: string[]): Fixture {
  return spawnJson('python3', [PEER, ...args], { uid: NOBODY, gid: NOBODY });
}

/** Lets other users reach this test's temporary directory (its sockets still have their own mode). */
export function openToOthers(): void {
  fs.chmodSync(path.dirname(tmpPath('x')), 0o755);
}

/** A file anyone can read, whose descriptors a stranger sends: found by path in an fd map. */
export function markerFile(): string {
  const file = tmpPath('sent-by-a-stranger');
  fs.writeFileSync(file, 'not yours', { mode: 0o644 });
  return file;
}
