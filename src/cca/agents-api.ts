import type { HindsightConfig, NotesConfig } from '../config.js';
import type { EmbeddingService } from '../embed/index.js';
import type { CommitSignal } from '../events/index.js';
import type { MemoryService } from '../memory/index.js';
import type { Logger } from '../obs/index.js';
import type {
  HindsightQueryResult,
  HindsightReportResult,
  HindsightResolveResult,
  SessionEndResult,
  TrajectoryCaptureResult,
} from '../protocol/index.js';
import type { Db } from '../store/index.js';
import { requirePermission, type TenantContext } from '../tenancy/index.js';
import { HindsightService } from './hindsight.js';
import type { Llm } from './llm.js';
import { NoteDistiller } from './notes.js';
import { SessionSweeper, TrajectoryStore } from './trajectories.js';

/**
 * The note-taking and hindsight agents as callers reach them, over REST and the socket alike:
 * roles are checked here, input is validated by the services, and the tenant always comes from
 * the verified token. Recording (capture, session end, report, resolve) needs memory:write;
 * asking (query) needs memory:read.
 */
export class AgentsApi {
  constructor(
    readonly trajectories: TrajectoryStore,
    readonly hindsight: HindsightService,
  ) {}

  async capture(ctx: TenantContext, input: unknown): Promise<TrajectoryCaptureResult> {
    requirePermission(ctx, 'memory:write');
    return this.trajectories.capture(ctx, input);
  }

  async endSession(ctx: TenantContext, input: unknown): Promise<SessionEndResult> {
    requirePermission(ctx, 'memory:write');
    return this.trajectories.end(ctx, input);
  }

  async report(ctx: TenantContext, input: unknown): Promise<HindsightReportResult> {
    requirePermission(ctx, 'memory:write');
    return this.hindsight.report(ctx, input);
  }

  async query(ctx: TenantContext, input: unknown): Promise<HindsightQueryResult> {
    requirePermission(ctx, 'memory:read');
    return this.hindsight.query(ctx, input);
  }

  async resolve(ctx: TenantContext, input: unknown): Promise<HindsightResolveResult> {
    requirePermission(ctx, 'memory:write');
    return this.hindsight.resolve(ctx, input);
  }
}

/** What the agents are built from; a Core has all of it. */
export interface AgentsDeps {
  db: Db;
  memory: MemoryService;
  embeddings: EmbeddingService;
  commits?: CommitSignal;
  llm?: Llm | undefined;
  config: { notes: NotesConfig; hindsight: HindsightConfig };
}

export function createTrajectoryStore(deps: AgentsDeps): TrajectoryStore {
  return new TrajectoryStore({ db: deps.db, config: deps.config.notes, ...(deps.commits ? { commits: deps.commits } : {}) });
}

export function createHindsight(deps: Pick<AgentsDeps, 'db' | 'embeddings' | 'memory' | 'commits'> & { config: { hindsight: HindsightConfig } }): HindsightService {
  const { db, embeddings, memory, commits, config } = deps;
  return new HindsightService({ db, embeddings, memory, config: config.hindsight, ...(commits ? { commits } : {}) });
}

export function createAgentsApi(deps: AgentsDeps): AgentsApi {
  return new AgentsApi(createTrajectoryStore(deps), createHindsight(deps));
}

/** The `cca.distill` job's worker: with `deps.llm` the LLM writes the note, else the extractive distiller. */
export function createNoteDistiller(deps: AgentsDeps): NoteDistiller {
  const { db, memory, commits, llm, config } = deps;
  return new NoteDistiller({ db, memory, trajectories: createTrajectoryStore(deps), config: config.notes, llm, ...(commits ? { commits } : {}) });
}

/** The idle-session sweep, for the processes that run jobs; start() it, stop() it on shutdown. */
export function createSessionSweeper(deps: AgentsDeps, log?: Logger): SessionSweeper {
  return new SessionSweeper({ db: deps.db, trajectories: createTrajectoryStore(deps), config: deps.config.notes, ...(log ? { log } : {}) });
}
