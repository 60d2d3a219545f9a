// fdpass: pass open file descriptors between Linux processes, and adopt them as Node objects.
export { Channel, openChannel } from './channel';
export type { ChannelOptions } from './channel';
export { closeFds } from './fds';
export { MAX_FDS_PER_MESSAGE, DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE } from './message';
export type { Message, OutgoingMessage, PeerCredentials } from './message';
export { connect, listen, bindDgram, socketPair, ChannelServer } from './endpoints';
export type { ConnectOptions, ListenOptions, BindDgramOptions, SocketPairOptions } from './endpoints';
export { sendFd, sendFds, recvFd, recvFds } from './transfer';
export type { TransferOptions, ReceiveOptions, ReceivedFd } from './transfer';
export { inspect, adopt, toServer, toSocket, toDgram, fdOf } from './adopt';
export type { FdInfo, FdKind, SocketInfo, SocketAddressInfo, FdLike } from './adopt';
export { listenReusePort, bindReusePort } from './reuseport';
export { distribute, Distributor } from './distribute';
export type { ReusePortListenOptions, ReusePortBindOptions } from './reuseport';
export { FdpassError, FdpassSystemError } from './errors';
/** Hot restart: `handoff.serve(path, listeners)` in the old process, `handoff.take(path)` in the new. */
export * as handoff from './handoff';
export { HandoffServer, Inheritance, Upgrader, HANDOFF_PROTOCOL_VERSION } from './handoff';
export { drain } from './handoff/drain';
export { warmUp } from './warm';
export type { WarmUpOptions, WarmUpResult } from './warm';
export type { DrainOptions } from './handoff/drain';
export type {
  HandoffListener,
  ServeOptions,
  TakeOptions,
  InheritedListener,
  ListenerKind,
  ReadyResult,
  SkippedListener,
  OfferOptions,
  MigratedConnection,
  MigrationCounts,
  UpgraderOptions,
  UpgradeResult,
} from './handoff';
/**
 * systemd: socket activation, sd_notify, the fd store and the watchdog, as `systemd.notify(...)` or
 * by the named exports below (the same functions).
 */
export * as systemd from './systemd';
export {
  listenFds,
  adoptListenFds,
  spawnActivated,
  notify,
  storeFds,
  removeStoredFds,
  startWatchdog,
  watchdogInterval,
  Watchdog,
} from './systemd';
export type {
  ListenFd,
  ListenFdsOptions,
  AdoptedFd,
  AdoptListenFdsOptions,
  ActivationFd,
  NotifyState,
  NotifyOptions,
  StoreFdsOptions,
} from './systemd';
export type { FdpassErrorCode } from './errors';
export type { SocketKind } from './names';
export type { WaitOptions } from './wait';

import { binding } from './native';
import { validateFd } from './validate';

/** Closes a descriptor you own, such as a received one. */
export function closeFd(fd: number): void {
  validateFd(fd);
  binding.close(fd);
}

/** Returns a close-on-exec duplicate of a descriptor (`F_DUPFD_CLOEXEC`). */
export function dupFd(fd: number): number {
  validateFd(fd);
  return binding.dup(fd);
}
