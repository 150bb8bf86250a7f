export type {
  PresenceChange,
  PresenceChangeKind,
  PresenceConnection,
  PresenceConnectionRef,
  PresenceJoinResult,
  PresenceListener,
  PresenceRegistry,
  PresenceState,
  PresenceUpdateResult,
} from './types.js';
export { CONNECTION_ID_PATTERN, defaultPresenceLog, memberIdOf, type PresenceLog } from './members.js';
export { MemoryPresenceRegistry } from './memory.js';
export { RedisPresenceRegistry, type RedisPresenceOptions } from './redis.js';
export { PRESENCE_EVENT_TYPES, presenceEnvelope, type PresenceEnvelope, type PresenceEventData } from './envelope.js';
