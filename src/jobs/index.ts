export { JobAdmin } from './admin.js';
export { backoffDelay } from './attempt.js';
export { BULLMQ_PREFIX, BullMqJobQueue, type BullMqJobQueueOptions } from './bullmq.js';
export { PendingJobs } from './bullmq-pending.js';
export { createJobQueue, type JobQueueDeps } from './create.js';
export { DeadLetterStore, type DeadJob, type DeadJobPage, type DeadLetterStoreOptions } from './dead-letter.js';
export { InProcessJobQueue, type InProcessJobQueueOptions } from './in-process.js';
export { JOB_ROUTES, jobDispatcher, jobsForEvents } from './routing.js';
export { JOBS_ACTOR, JOB_KIND_PATTERN, type DeadLetterSink, type EnqueueOptions, type JobContext, type JobProcessor, type JobQueue, type JobSpec } from './types.js';
