import { Redis } from 'ioredis';
import uWS from 'uWebSockets.js';
import { ContextApi, createAgentsApi, createMetaApi, createSessionSweeper } from '../src/cca/index.js';
import type { Core } from '../src/core.js';
import { DocStore } from '../src/docs/index.js';
import { GraphApi } from '../src/graph/index.js';
import { COMMITS_CHANNEL, EventRelay, LocalLeaseStore, RedisLeaseStore } from '../src/events/index.js';
import { DeadLetterStore, createJobQueue, jobDispatcher, type JobProcessor } from '../src/jobs/index.js';
import { BudgetApi, type Logger } from '../src/obs/index.js';
import { MemoryPresenceRegistry, RedisPresenceRegistry, type PresenceRegistry } from '../src/presence/index.js';
import { createPipeline } from './http/pipeline.js';
import { adminJobRoutes } from './http/admin-routes.js';
import { budgetRoutes } from './http/budget-routes.js';
import { agentsRoutes } from './http/agents-routes.js';
import { contextRoutes } from './http/context-routes.js';
import { graphRoutes } from './http/graph-routes.js';
import { metaRoutes } from './http/meta-routes.js';
import { tieringRoutes } from './http/tier-routes.js';
import { startTieringSweep } from '../workers/processors/tiering.js';
import { healthRoutes, memoryRoutes } from './http/routes.js';
import { mountRoutes } from './http/uws.js';
import { createAgentsExtension } from './realtime/agents.js';
import { createBudgetExtension } from './realtime/budget.js';
import { createContextExtension } from './realtime/context.js';
import { createDocsExtension } from './realtime/docs.js';
import { createGraphExtension } from './realtime/graph.js';
import { createMemoryStreamExtension } from './realtime/memory-stream.js';
import { createMetaExtension } from './realtime/meta.js';
import { createPresenceExtension } from './realtime/presence.js';
import { createRealtime, type Realtime } from './realtime/server.js';

export interface Gateway {
  readonly realtime: Realtime;
  /** Resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number>;
  /**
   * Stops accepting, tells socket clients to reconnect elsewhere, waits up to `graceMs` for
   * in-flight requests and acks, then closes everything.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * The package's own fallback swaps in a slow Node implementation when the native addon fails to
 * load; running on it would silently void every performance claim, so refuse instead.
 */
function assertNativeUws(): void {
  if (typeof (uWS as unknown as Record<string, unknown>)['SSLApp'] !== 'function') {
    throw new Error('uWebSockets.js native addon did not load (the JS fallback is not supported)');
  }
}

/** "Redis dropped messages somewhere: every node, ask your clients to re-check their position." */
const STREAM_CHECK_CHANNEL = 'aeterna:stream-check';

export interface GatewayOptions {
  /**
   * Embedded mode runs the workers' processors in this process (in-process queue). In cluster
   * mode the gateway only enqueues, to BullMQ, and `npm run worker` processes run the jobs.
   */
  processors?: Readonly<Record<string, JobProcessor>>;
}

export function createGateway(core: Core, log: Logger, opts: GatewayOptions = {}): Gateway {
  assertNativeUws();
  const config = core.config;
  const app = uWS.App();
  const inflight = { count: 0 };
  const redisUrl = config.redisUrl;
  const redis = redisUrl
    ? {
        pub: new Redis(redisUrl, { maxRetriesPerRequest: 2 }),
        sub: new Redis(redisUrl, { maxRetriesPerRequest: 2 }),
        commits: new Redis(redisUrl, { maxRetriesPerRequest: 2 }),
      }
    : undefined;
  for (const [role, client] of Object.entries(redis ?? {})) {
    // ioredis reconnects by itself; an error event without a listener would crash the process.
    client.on('error', (err: Error) => log.warn({ err: err.message, role }, 'redis connection error'));
  }

  const realtime = createRealtime({ app, tokens: core.tokens, config: config.realtime, log, ...(redis ? { redis } : {}) });
  const stream = createMemoryStreamExtension({ core, broadcaster: realtime.broadcaster, replayWindow: config.realtime.replayWindow });
  realtime.use(stream);
  const presenceLog = (message: string, err?: unknown) => log.warn({ err }, message);
  const { nodeId, presence: presenceConfig } = config.realtime;
  const presence: PresenceRegistry = redisUrl
    ? new RedisPresenceRegistry({ url: redisUrl, nodeId, ...presenceConfig, log: presenceLog })
    : new MemoryPresenceRegistry({ nodeId });
  realtime.use(createPresenceExtension(presence, realtime.broadcaster, { log: presenceLog }));
  realtime.use(createDocsExtension(new DocStore({ db: core.db }), realtime.broadcaster));
  const graphApi = new GraphApi(core.graph, core.snapshots);
  realtime.use(createGraphExtension(graphApi));
  const budgetApi = new BudgetApi(core.budgets, core.embeddings, () => ({ scope: 'process', context: core.context.stats().cache, search: core.search.stats() }));
  realtime.use(createBudgetExtension(budgetApi));
  const contextApi = new ContextApi({ context: core.context, summaries: core.summaries, memory: core.memory, config: config.context });
  realtime.use(createContextExtension(contextApi));
  const agentsApi = createAgentsApi(core);
  realtime.use(createAgentsExtension(agentsApi));
  const metaApi = createMetaApi(core);
  realtime.use(createMetaExtension(metaApi));

  const deadLetters = new DeadLetterStore({ db: core.db, commits: core.commits });
  const jobs = createJobQueue(config, { deadLetters, log, closeGraceMs: config.realtime.drainMs, db: core.db });
  // Embedded mode without processors has nobody to run jobs: enqueueing would only pile them up.
  const dispatchesJobs = Boolean(redisUrl) || opts.processors !== undefined;
  // Whoever runs the jobs also ends idle sessions: this process in embedded mode, workers in cluster mode.
  const sweeper = !redisUrl && opts.processors ? createSessionSweeper(core, log) : undefined;
  const relay = new EventRelay({
    db: core.db,
    sink: stream.sink,
    ...(dispatchesJobs ? { dispatch: jobDispatcher(jobs) } : {}),
    leases: redis ? new RedisLeaseStore(redis.pub) : new LocalLeaseStore(),
    nodeId: config.realtime.nodeId,
    partitions: config.realtime.relay.partitions,
    leaseTtlMs: config.realtime.relay.leaseMs,
    tickMs: config.realtime.relay.tickMs,
    batchSize: 500,
    log: (level, msg, err) => log[level]({ err }, msg),
  });
  const unsubscribeCommits = core.commits.subscribe((tenantId) => {
    relay.nudge(tenantId);
    // The partition may be relayed by another node: tell them all. A lost message only delays
    // delivery until the relay's next poll.
    redis?.pub.publish(COMMITS_CHANNEL, tenantId).catch(() => {});
  });
  if (redis) {
    void redis.commits.subscribe(COMMITS_CHANNEL, STREAM_CHECK_CHANNEL).catch((err: unknown) => log.warn({ err }, 'channel subscribe failed'));
    redis.commits.on('message', (channel: string, message: string) => {
      if (channel === COMMITS_CHANNEL) relay.nudge(message);
      else realtime.checkStreams(message);
    });
    // Pub/sub drops whatever is published while a connection is down, on either side: a node that
    // lost its subscriber missed broadcasts, a node that lost its publisher (the relay's) dropped
    // them for everyone. After any reconnect, every node's clients re-check against the event log.
    for (const [role, client] of Object.entries(redis)) {
      let lost = false;
      client.on('close', () => (lost = true));
      client.on('ready', () => {
        if (!lost) return;
        lost = false;
        log.warn({ role }, 'redis reconnected: clients re-check their stream positions');
        realtime.checkStreams('redis_reconnected');
        redis.pub.publish(STREAM_CHECK_CHANNEL, 'redis_reconnected').catch(() => {});
      });
    }
  }

  const pipeline = createPipeline(core.tokens, log);
  mountRoutes(app, [...healthRoutes(core), ...memoryRoutes(core), ...graphRoutes(graphApi), ...agentsRoutes(agentsApi), ...contextRoutes(contextApi), ...metaRoutes(metaApi), ...tieringRoutes(core.tiering), ...adminJobRoutes({ deadLetters, queue: jobs }), ...budgetRoutes(budgetApi)], pipeline, {
    maxBodyBytes: config.limits.maxBodyBytes,
    log,
    inflight,
  });
  let listenSocket: uWS.us_listen_socket | undefined;
  let tierSweep: { stop(): void } | undefined;

  return {
    realtime,
    async listen(host, port) {
      if (!redisUrl && opts.processors) {
        await jobs.work(opts.processors);
        sweeper?.start();
        tierSweep = startTieringSweep({ db: core.db, queue: jobs, intervalMs: config.tiering.intervalMs, log });
      }
      await relay.start();
      await presence.start();
      return new Promise((resolve, reject) => {
        app.listen(host, port, (socket) => {
          if (!socket) {
            reject(new Error(`could not listen on ${host}:${port}`));
            return;
          }
          listenSocket = socket;
          resolve(uWS.us_socket_local_port(socket));
        });
      });
    },
    async close(graceMs = 5000) {
      if (listenSocket) uWS.us_listen_socket_close(listenSocket);
      listenSocket = undefined;
      await realtime.drain();
      const deadline = Date.now() + graceMs;
      while (inflight.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      unsubscribeCommits();
      await relay.stop();
      await sweeper?.stop();
      tierSweep?.stop();
      await jobs.close();
      await realtime.close();
      await presence.close();
      await Promise.allSettled(Object.values(redis ?? {}).map((client) => client.quit()));
      // close() exists in this uWS build (it drops every open socket) but is missing from its typings.
      (app as unknown as { close(): void }).close();
    },
  };
}
