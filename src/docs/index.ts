export {
  DEFAULT_COMPACT_EVERY,
  DEFAULT_MAX_UPDATE_BYTES,
  DocStore,
  type AppendResult,
  type DocStoreOptions,
  type SyncResult,
} from './store.js';
export { AwarenessMerger, REMOVED_STATE, readAwarenessUpdate, writeAwarenessUpdate, type AwarenessEntry } from './awareness.js';
export { readSyncMessage, syncStep1Message, syncStep2Message, syncUpdateMessage, type SyncMessage } from './sync.js';
