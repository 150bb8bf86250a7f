export { EventLog, type AppendEventInput } from './log.js';
export { EventRelay, partitionOf, type EventRelayOptions, type EventSink } from './relay.js';
export { LocalLeaseStore, RedisLeaseStore, type LeaseStore } from './stores.js';
export { COMMITS_CHANNEL, CommitSignal } from './signal.js';
