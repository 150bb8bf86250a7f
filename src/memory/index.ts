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
