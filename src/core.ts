import os from 'node:os';
import path from 'node:path';
import type { Config } from './config.js';
import { createEmbeddingService, type EmbeddingService } from './embed/index.js';
import { createLlm, type Llm } from './cca/index.js';
import { CommitSignal } from './events/index.js';
import { GraphSnapshotter, GraphStore, createSnapshotStore } from './graph/index.js';
import { MemoryService } from './memory/index.js';
import type { Logger } from './obs/index.js';
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
  const embeddings = createEmbeddingService({
    embedder: config.embedder,
    embedCache: config.embedCache,
    ...(config.redisUrl ? { redisUrl: config.redisUrl } : {}),
  });
  let db: Db;
  try {
    db = await openDb(config.database, {
      prepare: preparePgvector(embeddings.dims),
      log: (line) => log.info(line),
    });
  } catch (err) {
    await embeddings.close();
    throw err;
  }
  const vectors = createVectorIndex(db.capabilities, embeddings.dims);
  const commits = new CommitSignal();
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
  log.info({ db: db.kind, vectors: vectors.name, embedder: embeddings.model, graph: config.graph.duckdbPath, llm: llm?.model ?? null }, 'core ready');
  const memory = new MemoryService({
    commits,
    db,
    embeddings,
    vectors,
    maxContentBytes: config.limits.maxContentBytes,
    dedupThreshold: config.memory.dedupThreshold,
    recencyHalfLifeDays: config.memory.recencyHalfLifeDays,
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
    commits,
    tokens,
    signingSecret,
    async close() {
      await graph.close();
      await Promise.allSettled([db.close(), embeddings.close()]);
    },
  };
}
