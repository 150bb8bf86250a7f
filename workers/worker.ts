import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/config.js';
import { createSessionSweeper } from '../src/cca/index.js';
import { openCore } from '../src/core.js';
import { COMMITS_CHANNEL } from '../src/events/index.js';
import { DeadLetterStore, createJobQueue, type JobProcessor } from '../src/jobs/index.js';
import { createLogger, type Logger } from '../src/obs/index.js';
import { createProcessors, type ProcessorDeps } from './processors/index.js';
import { startTieringSweep } from './processors/tiering.js';

export interface WorkerOptions {
  /** The processors to run; every kind this build has unless a test brings its own. */
  createProcessors?: (deps: ProcessorDeps) => Record<string, JobProcessor>;
}

export interface RunningWorker {
  kinds: string[];
  /** Finishes running jobs (bounded by AETERNA_DRAIN_MS), then closes everything. */
  stop(): Promise<void>;
}

/** A set-up problem the operator must fix; exits 2 like a configuration error. */
export class WorkerSetupError extends Error {}

/**
 * A worker process's insides: the core, a BullMQ queue consuming every kind it has a processor
 * for, and commit nudges for the gateways. Workers exist only in cluster mode: the embedded
 * database belongs to the one `npm start` process, which runs the jobs itself.
 */
export async function startWorker(config: Config, log: Logger, opts: WorkerOptions = {}): Promise<RunningWorker> {
  if (config.mode !== 'cluster' || !config.redisUrl) {
    throw new WorkerSetupError(
      'workers need cluster mode: set AETERNA_REDIS_URL and AETERNA_DATABASE_URL. In embedded mode `npm start` runs the jobs in its own process.',
    );
  }
  const core = await openCore(config, log);
  const publisher = new Redis(config.redisUrl, { maxRetriesPerRequest: 2 });
  publisher.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
  // Workers write events too (job.failed, graph results): nudge the relays as a gateway's writes do.
  // A lost nudge only delays delivery until the relay's next poll.
  const unsubscribe = core.commits.subscribe((tenantId) => void publisher.publish(COMMITS_CHANNEL, tenantId).catch(() => {}));
  const queue = createJobQueue(config, {
    deadLetters: new DeadLetterStore({ db: core.db, commits: core.commits }),
    log,
    // The same grace a gateway gives in-flight requests on SIGTERM.
    closeGraceMs: config.realtime.drainMs,
  });
  // Ending idle sessions is safe on several workers at once: each end is a guarded update.
  const sweeper = createSessionSweeper(core, log);
  let tierSweep: { stop(): void } | undefined;
  const stop = async () => {
    tierSweep?.stop();
    await sweeper.stop();
    await queue.close();
    unsubscribe();
    publisher.disconnect();
    await core.close();
  };
  try {
    const processors = (opts.createProcessors ?? createProcessors)({ core, log });
    await queue.work(processors);
    sweeper.start();
    tierSweep = startTieringSweep({ db: core.db, queue, intervalMs: config.tiering.intervalMs, log });
    return { kinds: Object.keys(processors), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * `npm run worker`: start, print a ready line, and on SIGTERM/SIGINT let running jobs finish and
 * exit 0. Resolves with the exit code.
 */
export async function runWorkerProcess(opts: WorkerOptions = {}): Promise<number> {
  let config: Config;
  let worker: RunningWorker;
  let log: Logger;
  try {
    config = loadConfig();
    log = createLogger(config.logLevel, 'aeterna-worker');
    worker = await startWorker(config, log, opts);
  } catch (err) {
    process.stderr.write(`aeterna worker: ${(err as Error).message}\n`);
    return 2;
  }
  process.stdout.write(`Aeterna worker ready (pid ${process.pid}; job kinds: ${worker.kinds.join(', ') || 'none yet'})\n`);
  // A bug that leaks a rejected promise is logged, not allowed to take the running jobs down.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      setTimeout(() => process.exit(1), config.realtime.drainMs + 5000).unref();
      worker.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
