// The CCA module's public face: other folders import only from here.
export { OpenAiChatLlm, createLlm, chatCompletionsUrl, jsonObjectIn, DEFAULT_LLM_RETRY } from './llm.js';
export type { Llm, LlmMessage, LlmRequest, LlmResponse, LlmRole, LlmUsage, OpenAiChatLlmOptions } from './llm.js';
export { postJson, networkErrorCode } from './http.js';
export type { PostJsonOptions, RetryPolicy } from './http.js';
export { MeteredLlm, promptTokens } from './metered-llm.js';
// Context Architect: summaries, context packing, the semantic answer cache.
export { ExtractiveSummarizer, LlmSummarizer, createSummarizer, fitToTokens, splitSentences } from './summarizer.js';
export type { Summarizer, SummaryCaps, LlmSummarizerOptions, Sentence } from './summarizer.js';
export { SummaryService } from './summaries.js';
export type { SummarizeOptions, SummarizeOutcome, SummarizeStatus, SummaryServiceOptions, SummarySource } from './summaries.js';
export { ContextArchitect, createContextServices, levelFor, packContext } from './context.js';
export type { ContextArchitectOptions, ContextServices, ContextServicesOptions, ContextStats, LevelThresholds, PackCandidate, PackedContext } from './context.js';
export { MemoryAnswerStore, RedisAnswerStore, SemanticAnswerCache } from './answer-cache.js';
export type { AnswerCacheStats, AnswerEntry, AnswerFence, AnswerSource, AnswerStore, CachedAnswer, SemanticAnswerCacheOptions } from './answer-cache.js';
export { ContextApi, type ContextApiOptions } from './context-api.js';
export { CachedMemorySearch, type CachedSearchResult, type SearchAnswer } from './search-answers.js';
// Note-taking and hindsight learning: trajectories, redaction, distilled notes, error patterns.
export { capUtf8, looksLikeToken, redactText, sanitiseForStorage, type CappedText, type Redacted, type RedactionKind } from './redact.js';
export { errorSignature, normaliseErrorMessage, stackFrames, type ErrorSignature } from './signature.js';
export { SESSION_SWEEPER_ACTOR, SessionSweeper, TrajectoryStore } from './trajectories.js';
export type { SessionSegment, SessionSweeperOptions, ToolStats, TrajectoryStoreOptions } from './trajectories.js';
export { DISTILL_JOB, NOTE_TAKER_ACTOR, NoteDistiller, extractiveNote, isStateChangingTool, parseLlmNote, renderNote, sessionSignificance } from './notes.js';
export type { DistillOutcome, NoteBody, NoteDistillerOptions, Significance } from './notes.js';
export { HINDSIGHT_ACTOR, HindsightService, recency, successRate, type HindsightServiceOptions } from './hindsight.js';
export { AgentsApi, createAgentsApi, createHindsight, createNoteDistiller, createSessionSweeper, createTrajectoryStore, type AgentsDeps } from './agents-api.js';
// The Meta-Agent: build → test → improve runs, their state, and the sandbox their test commands run in.
export { CommandSandbox, parseCommand } from './sandbox.js';
export type { CommandSandboxOptions, SandboxResult, SandboxRun } from './sandbox.js';
export { META_AGENT_ACTOR, MetaRunStore, publicRun } from './meta-store.js';
export { META_FAILURE_TYPE, META_JOB, MetaAgent, escalationReport, parseCandidate, type MetaAgentOptions } from './meta-agent.js';
export { MetaApi, createMetaAgent, createMetaApi, type MetaApiOptions, type MetaDeps } from './meta-api.js';
