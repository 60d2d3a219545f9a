// Issue 9, "every descriptor has one owner on every path": a throwing handler, a half-built poller, a
// socket of the wrong kind, a datagram sender that `allow` refuses, a half-closed stream. Each test
// checks the descriptors of every process involved before and after.
import * as assert from 'node:assert/strict';
import { runFixture } from './helpers/children';
import { tmpPath } from './helpers/tmp';

interface Targets {
  before: Record<string, string>;
  afterTargets: Record<string, string>;
  countBefore: number;
  after: number;
}

/** The child's descriptors are back where they were. */
function assertChildFdsBack(r: Targets, what: string): void {
  assert.deepEqual(r.afterTargets, r.before, `${what}: the child's descriptors differ from its baseline`);
  assert.equal(r.after, r.countBefore);
}

describe('ownership (issue 9)', () => {
  describe('a throwing handler loses nothing of its batch', () => {
    it("listen(): a 'connection' handler that throws on the first of 10 simultaneous connections: all 10 get a Channel, the throw reaches 'uncaughtException', no fd is left bare", async () => {
      const child = runFixture('throwing-handlers', ['connection', tmpPath('throw.sock')]);
      const r = await child.expect<Targets & { connections: number; uncaught: string[]; clientsSawEof: number; held: number }>('done');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.equal(r.connections, 10, "every accepted socket reached a 'connection' handler");
      assert.deepEqual(r.uncaught, ['handler failed on the first connection']);
      assert.equal(r.held, r.countBefore + 1 + 2 * 10, 'listener + both ends of 10 connections while open');
      assert.equal(r.clientsSawEof, 10, "each client saw the server's close: none was left served by nobody");
      assertChildFdsBack(r, 'after closing every channel');
    });

    it("a 'message' handler that throws on the first of 3 fd-carrying messages and an EOF read in one batch: 2 and 3 still arrive, then 'end' and 'close'; the throw reaches 'uncaughtException'", async () => {
      const child = runFixture('throwing-handlers', ['message']);
      const r = await child.expect<Targets & { events: string[]; uncaught: string[]; sawClose: boolean }>('done');
      assert.deepEqual(await child.exited, { code: 0, signal: null }, child.stderr());
      assert.deepEqual(r.events, ['message m0', 'message m1', 'message m2', 'end', 'close']);
      assert.deepEqual(r.uncaught, ['handler failed on the first message']);
      assert.equal(r.sawClose, true);
      assertChildFdsBack(r, 'after closing the fds of every message');
    });
  });
});
