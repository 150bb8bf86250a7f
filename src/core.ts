import os from 'node:os';
import path from 'node:path';
import type { Config } from './config.js';
import { createEmbeddingService, type EmbeddingService } from './embed/index.js';
import { MeteredLlm, createContextServices, createLlm, type CachedMemorySearch, type ContextArchitect, type Llm, type SummaryService } from './cca/index.js';
import { CommitSignal } from './events/index.js';
import { GraphSnapshotter, GraphStore, createSnapshotStore } from './graph/index.js';
import { MemoryService, TieringService, createColdStore } from './memory/index.js';
import { TokenBudgets, type Logger } from './obs/index.js';
import { openDb, type Db } from './store/index.js';
import { TokenVerifier, resolveTokenKeys } from './tenancy/index.js';
import { createVectorIndex, preparePgvector, type VectorIndex } from './vector/index.js';

/** Everything the gateway and the workers share, wired from one Config. */
export interface Core {
  readonly config: Config;
  readonly db: Db;
  readonly embeddings: EmbeddingService;
  readonly vectors: VectorIndex;
  readonly memory: MemoryService;
  /** This process's projection of the knowledge graph (the log in the database is the truth). */
  readonly graph: GraphStore;
  readonly snapshots: GraphSnapshotter;
  /** The configured chat model, if any (AETERNA_LLM_URL). */
  readonly llm: Llm | undefined;
  /** `llm` charged to a tenant's LLM token budget: `core.meteredLlm?.forTenant(job.tenantId)`. */
  readonly meteredLlm: MeteredLlm | undefined;
  /** Per-tenant token budgets (usage, limits, budget.warning/exceeded); embeddings charge it. */
  readonly budgets: TokenBudgets;
  /** Hot/warm/cold classification and the cold archive (Parquet) behind memory stubs. */
  readonly tiering: TieringService;
  /** The three summary levels of each memory (the cca.summarize job writes them). */
  readonly summaries: SummaryService;
  /** context.assemble: relevant memories packed into a token budget, with a semantic answer cache. */
  readonly context: ContextArchitect;
  /** memory.search served from the semantic answer cache when a same-meaning query's answer is still valid. */
  readonly search: CachedMemorySearch;
  /** Fires after each committed write: the relay's cue to read the log. */
  readonly commits: CommitSignal;
  readonly tokens: TokenVerifier;
  /** The HS secret when tokens are signed locally (embedded mode, or AETERNA_JWT_SECRET). */
  readonly signingSecret: string | undefined;
  close(): Promise<void>;
}

export async function openCore(config: Config, log: Logger): Promise<Core> {
  const { keys, signingSecret } = await resolveTokenKeys(config.auth, config.dataDir);
  const tokens = new TokenVerifier({
    keys,
    ...(config.auth.issuer ? { issuer: config.auth.issuer } : {}),
    ...(config.auth.audience ? { audience: config.auth.audience } : {}),
  });
  // The budgets live in the database and the embedding service charges them, so the database
  // opens first; its vector columns take their size from config, which is the embedder's.
  const db: Db = await openDb(config.database, {
    prepare: preparePgvector(config.embedder.dims),
    log: (line) => log.info(line),
  });
  const commits = new CommitSignal();
  const budgets = new TokenBudgets({ db, commits, config: config.budgets, log });
  let embeddings: EmbeddingService;
  try {
    embeddings = createEmbeddingService({
      embedder: config.embedder,
      embedCache: config.embedCache,
      meter: budgets,
      ...(config.redisUrl ? { redisUrl: config.redisUrl } : {}),
    });
  } catch (err) {
    await db.close();
    throw err;
  }
  const vectors = createVectorIndex(db.capabilities, embeddings.dims);
  const snapshots = new GraphSnapshotter({
    store: createSnapshotStore(config.graph.snapshots),
    tmpDir: path.join(os.tmpdir(), `aeterna-snapshots-${process.pid}`),
    log,
  });
  let graph: GraphStore;
  try {
    graph = await GraphStore.open({ db, config: config.graph, log, commits, snapshots, embeddings });
  } catch (err) {
    await Promise.allSettled([db.close(), embeddings.close()]);
    throw err;
  }
  const llm = createLlm(config.llm);
  const meteredLlm = llm ? new MeteredLlm(llm, budgets) : undefined;
  log.info({ db: db.kind, vectors: vectors.name, embedder: embeddings.model, graph: config.graph.duckdbPath, llm: llm?.model ?? null }, 'core ready');
  const tiering = new TieringService({ db, vectors, cold: createColdStore(config.tiering.store, log), config: config.tiering, log, commits });
  const memory = new MemoryService({
    commits,
    cold: tiering,
    db,
    embeddings,
    vectors,
    maxContentBytes: config.limits.maxContentBytes,
    dedupThreshold: config.memory.dedupThreshold,
    recencyHalfLifeDays: config.memory.recencyHalfLifeDays,
  });
  // Summaries made by the LLM are charged to the tenant they are for.
  const cca = createContextServices({
    config,
    db,
    memory,
    embeddings,
    llm,
    commits,
    ...(meteredLlm ? { llmFor: (tenantId: string) => meteredLlm.forTenant(tenantId) } : {}),
  });
  return {
    config,
    db,
    embeddings,
    vectors,
    memory,
    graph,
    snapshots,
    llm,
    meteredLlm,
    budgets,
    tiering,
    summaries: cca.summaries,
    context: cca.context,
    search: cca.search,
    commits,
    tokens,
    signingSecret,
    async close() {
      await graph.close();
      await cca.close();
      await tiering.close();
      await Promise.allSettled([db.close(), embeddings.close()]);
    },
  };
}
