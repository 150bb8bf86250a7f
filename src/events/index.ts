export { EventLog, type AppendEventInput } from './log.js';
export { EventRelay, partitionOf, type EventRelayOptions, type EventSink } from './relay.js';
export { LocalCursorStore, LocalLeaseStore, RedisCursorStore, RedisLeaseStore, type CursorStore, type LeaseStore } from './stores.js';
export { CommitSignal } from './signal.js';
