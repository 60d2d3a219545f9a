// systemd: socket activation (listenFds, adoptListenFds, spawnActivated), sd_notify (notify), the fd
// store (storeFds, removeStoredFds) and the watchdog (startWatchdog). See docs/systemd.md.
export { listenFds, adoptListenFds, spawnActivated, LISTEN_FDS_START } from './activation';
export type { ListenFd, ListenFdsOptions, AdoptedFd, AdoptListenFdsOptions, ActivationFd } from './activation';
export { notify, notifyMessage, storeFds, removeStoredFds } from './notify';
export type { NotifyState, NotifyOptions, StoreFdsOptions } from './notify';
export { startWatchdog, watchdogInterval, Watchdog } from './watchdog';
export { MAX_FD_NAME_LENGTH } from './names';
