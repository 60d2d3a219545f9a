// The error-expectation kit of the tests: run something that must fail, get its error, and check it
// has the shape of Node's own (argument errors, system errors) or fdpass's (FdpassError codes).
// Whatever succeeded by mistake is closed, so that one bug does not cascade into leaks.
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as os from 'node:os';
import * as util from 'node:util';
import { Channel, ChannelServer, FdpassError, FdpassSystemError, closeFd } from 'fdpass';

export type AnyError = Error & { code?: unknown; errno?: unknown; syscall?: unknown; path?: unknown; address?: unknown; port?: unknown };

/** Lets a test pass a value its types forbid. */
export const bad = (v: unknown): never => v as never;

/** Closes whatever an operation that should have failed returned anyway, so one bug does not cascade into leaks. */
export async function dispose(v: unknown): Promise<void> {
  if (v instanceof Channel || v instanceof ChannelServer) await v.close();
  else if (v instanceof net.Server) await new Promise<void>((r) => v.close(() => r()));
  else if (v instanceof net.Socket) v.destroy();
  else if (v instanceof dgram.Socket) await new Promise<void>((r) => v.close(() => r()));
  else if (Array.isArray(v)) for (const x of v) await dispose(x);
  else if (v !== null && typeof v === 'object') {
    const o = v as { fd?: unknown; fds?: unknown };
    if (typeof o.fd === 'number') closeFd(o.fd);
    if (Array.isArray(o.fds)) for (const fd of o.fds) closeFd(fd as number);
  }
}

/**
 * Runs `fn` (sync or async; or awaits a promise) and returns the error it threw or rejected with;
 * fails if it succeeded, after closing what it returned.
 */
export async function failure(fn: Promise<unknown> | (() => unknown), what = fn.toString()): Promise<AnyError> {
  let result: unknown;
  try {
    result = await (typeof fn === 'function' ? fn() : fn);
  } catch (err) {
    assert.ok(err instanceof Error, `${what}: threw a non-Error ${util.inspect(err)}`);
    return err as AnyError;
  }
  await dispose(result);
  return assert.fail(`${what}: expected an error, but it succeeded with ${util.inspect(result, { depth: 0 })}`);
}

/** An argument error shaped like Node's own (class, own enumerable code, readable message). */
export function assertArgError(err: AnyError, cls: typeof TypeError | typeof RangeError, code: string, message?: RegExp, what = ''): void {
  assert.ok(err instanceof cls, `${what}: expected a ${cls.name}, got ${err.name}: ${err.message}`);
  assert.equal(err.code, code, `${what}: code (message: ${err.message})`);
  assert.ok(Object.keys(err).includes('code'), `${what}: code must be an own enumerable property`);
  assert.ok(!(err instanceof FdpassSystemError), what);
  if (message) assert.match(err.message, message, what);
}

/** A system error shaped like Node's: code, negative errno matching it, syscall, and all three readable. */
export function assertSystemError(err: AnyError, code: string, syscall: string, what = ''): void {
  assert.ok(err instanceof FdpassSystemError, `${what}: expected an FdpassSystemError, got ${err.name}: ${err.message}`);
  assert.ok(err instanceof Error, what);
  assert.equal(err.code, code, `${what}: code (message: ${err.message})`);
  assert.equal(err.syscall, syscall, `${what}: syscall (message: ${err.message})`);
  const errno = (os.constants.errno as Record<string, number>)[code];
  assert.equal(typeof errno, 'number', `${code} is a known errno`);
  assert.equal(err.errno, -errno!, `${what}: errno is the negative errno, as Node's`);
  assert.equal(util.getSystemErrorName(err.errno as number), code, what);
  assert.ok(err.message.includes(code), `${what}: the message names the code: ${err.message}`);
  assert.ok(err.message.includes(syscall), `${what}: the message names the syscall: ${err.message}`);
}

export function assertFdpassError(err: AnyError, code: string, message?: RegExp, what = ''): void {
  assert.ok(err instanceof FdpassError, `${what}: expected an FdpassError, got ${err.name}: ${err.message}`);
  assert.equal(err.code, code, `${what}: code (message: ${err.message})`);
  if (message) assert.match(err.message, message, what);
}

/**
 * Awaits `p` (a promise, or a function called first), expecting an FdpassError with `code` (and a
 * message matching `message`); returns it. What succeeded anyway is closed.
 */
export async function expectFdpassError(
  p: Promise<unknown> | (() => unknown),
  code: string,
  message?: RegExp,
  what = '',
): Promise<FdpassError> {
  const err = await failure(p, what || String(code));
  assertFdpassError(err, code, message, what);
  return err as FdpassError;
}
