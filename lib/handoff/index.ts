// Hot restart (DESIGN.md §7): `serve()` in the old process, `take()` in the new one.
export { serve, HandoffServer } from './serve';
export type { ServeOptions, OfferOptions } from './serve-options';
export type { HandoffListener } from './listeners';
export { take } from './take';
export { Inheritance } from './inheritance';
export type { TakeOptions } from './take';
export type { InheritedListener, ReadyResult, MigratedConnection } from './inheritance';
export { HANDOFF_PROTOCOL_VERSION } from './protocol';
export type { ListenerKind, SkippedListener, MigrationCounts } from './protocol';
export { inherit, UPGRADE_SOCKET_ENV } from './inherit';
export { upgrader, Upgrader } from './upgrade';
export type { UpgraderOptions, UpgradeResult } from './upgrade';
