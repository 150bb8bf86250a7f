export {
  AeternaClient,
  type AeternaClientOptions,
  type ClientEvents,
  type ListQuery,
  type ParserMode,
  type SearchQuery,
  type SessionJoinOptions,
  type TransportMode,
} from './client.js';
export { REMOTE_ORIGIN, SharedDoc, type DocOpenReply } from './doc.js';
export type { StreamEventHandler, StreamPosition, SubscribeOptions, Subscription } from './stream.js';
export type { PresenceEnvelope, PresenceEventData } from '../presence/index.js';
