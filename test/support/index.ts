// The one import path for test files (and loadtest/), so helpers can move without churn.
export { testRedisUrl, testDatabaseUrl, servicesRequired, requireService, REDIS_URL_VAR, DATABASE_URL_VAR, REQUIRE_SERVICES_VAR } from './env.js';
export type { ServiceName } from './env.js';
export { startServices, createTestDatabase, REDIS_LABEL, POSTGRES_LABEL } from './services.js';
export type { RunningServices, StartServicesOptions, TestDatabase } from './services.js';
export { startLlmServer, chatCompletion, type LlmServer, type LlmReply, type LlmHandler, type RecordedLlmRequest, type ChatRequestBody } from './llm-server.js';
export { startTestS3, type TestS3 } from './s3.js';
export { BullMqTestRun, type BullMqTestQueueOptions } from './bullmq.js';
