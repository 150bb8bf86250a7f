export {
  MemoryService,
  type AddResult,
  type DeleteResult,
  type EventPage,
  type ListResult,
  type MemoryServiceOptions,
  type SearchHit,
} from './service.js';
export { importanceAfterFeedback, rankScore, type RankInput } from './ranking.js';
export { mayAccessScope, resolveReadScopes, resolveWriteScope } from './scope.js';
export {
  TIERING_ACTOR,
  TieringService,
  classifyTier,
  lastActivity,
  previewOf,
  tieringRunSchema,
  type ColdRestorer,
  type ColdStub,
  type TierInput,
  type TierPolicy,
  type TierStats,
  type TieringReport,
  type TieringServiceOptions,
} from './tiering.js';
export { ColdStore, coldMonth, coldPrefix, createColdStore, type ColdBatch, type ColdRow, type ColdStoreOptions } from './cold-store.js';
