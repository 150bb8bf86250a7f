import type { HindsightConfig, MetaConfig } from '../config.js';
import type { EmbeddingService } from '../embed/index.js';
import type { CommitSignal } from '../events/index.js';
import type { MemoryService } from '../memory/index.js';
import type { Logger } from '../obs/index.js';
import type { Db } from '../store/index.js';
import {
  AeternaError,
  metaListSchema,
  metaRunIdSchema,
  metaRunSchema,
  metaTestResultSchema,
  parseInput,
  type MetaRun,
  type MetaTestSpec,
} from '../protocol/index.js';
import { requirePermission, type TenantContext } from '../tenancy/index.js';
import type { ContextArchitect } from './context.js';
import { createHindsight } from './agents-api.js';
import type { Llm } from './llm.js';
import { MetaAgent } from './meta-agent.js';
import { MetaRunStore, publicRun } from './meta-store.js';
import { CommandSandbox, parseCommand } from './sandbox.js';

export interface MetaApiOptions {
  store: MetaRunStore;
  sandbox: CommandSandbox;
  config: MetaConfig;
  /** Whether a language model is configured: without one a run is refused, not pretended. */
  llmConfigured: boolean;
}

/**
 * The Meta-Agent as callers reach it, over REST and the socket alike. Starting a run needs
 * memory:write; a run that executes a command on the server also needs meta:exec (admins), and
 * the program must be on the server's allow-list. The run itself happens in a `cca.meta` job.
 */
export class MetaApi {
  private readonly runSchema: ReturnType<typeof metaRunSchema>;

  constructor(private readonly opts: MetaApiOptions) {
    this.runSchema = metaRunSchema(opts.config);
  }

  async start(ctx: TenantContext, raw: unknown): Promise<MetaRun> {
    requirePermission(ctx, 'memory:write');
    const input = parseInput(this.runSchema, raw, 'meta run');
    if (!this.opts.llmConfigured) {
      throw new AeternaError('UNAVAILABLE', 'the Meta-Agent needs a language model: set AETERNA_LLM_URL and AETERNA_LLM_MODEL', { reason: 'llm_not_configured' });
    }
    let test: MetaTestSpec = { kind: 'callback' };
    if (input.testCommand !== undefined) {
      requirePermission(ctx, 'meta:exec');
      const argv = parseCommand(input.testCommand);
      this.opts.sandbox.check(argv);
      test = { kind: 'command', argv };
    }
    const run = await this.opts.store.create(ctx, {
      goal: input.goal,
      test,
      maxIterations: input.maxIterations,
      timeBudgetMs: input.timeBudgetMs,
      testTimeoutMs: input.testTimeoutMs,
      options: {
        ...(input.layers ? { layers: input.layers } : {}),
        ...(input.projectId ? { projectId: input.projectId } : {}),
        ...(input.teamId ? { teamId: input.teamId } : {}),
      },
    });
    return publicRun(run);
  }

  async get(ctx: TenantContext, raw: unknown): Promise<MetaRun> {
    requirePermission(ctx, 'memory:read');
    const { runId } = parseInput(metaRunIdSchema, raw, 'meta run id');
    const run = await this.opts.store.load(ctx.tenantId, runId);
    return publicRun(run, await this.opts.store.iterations(ctx.tenantId, runId));
  }

  async list(ctx: TenantContext, raw: unknown): Promise<{ runs: MetaRun[] }> {
    requirePermission(ctx, 'memory:read');
    const filter = parseInput(metaListSchema, raw ?? {}, 'meta run listing');
    const runs = await this.opts.store.list(ctx.tenantId, { limit: filter.limit, ...(filter.status ? { status: filter.status } : {}) });
    return { runs: runs.map((run) => publicRun(run)) };
  }

  async testResult(ctx: TenantContext, raw: unknown): Promise<{ runId: string; iteration: number; accepted: true }> {
    requirePermission(ctx, 'memory:write');
    const input = parseInput(metaTestResultSchema, raw, 'meta test result');
    await this.opts.store.submitVerdict(ctx.tenantId, input.runId, input.iteration, {
      passed: input.passed,
      via: 'callback',
      exitCode: null,
      timedOut: false,
      output: input.output ?? '',
      durationMs: 0,
    });
    return { runId: input.runId, iteration: input.iteration, accepted: true };
  }

  async cancel(ctx: TenantContext, raw: unknown): Promise<MetaRun> {
    requirePermission(ctx, 'memory:write');
    const { runId } = parseInput(metaRunIdSchema, raw, 'meta run id');
    return publicRun(await this.opts.store.requestCancel(ctx, runId));
  }
}

/** What the Meta-Agent is built from; a Core has all of it. */
export interface MetaDeps {
  db: Db;
  memory: MemoryService;
  embeddings: EmbeddingService;
  context: ContextArchitect;
  commits?: CommitSignal;
  llm: Llm | undefined;
  /** The model charged to a tenant's budget (Core.meteredLlm). */
  meteredLlm: { forTenant(tenantId: string): Llm } | undefined;
  config: { meta: MetaConfig; hindsight: HindsightConfig };
}

function sandboxFor(config: MetaConfig, log?: Logger): CommandSandbox {
  const { allow, runAs, cpuSeconds, memoryMb, maxOutputBytes } = config.sandbox;
  return new CommandSandbox({ allow, maxTimeoutMs: config.testTimeoutMs, maxOutputBytes, cpuSeconds, memoryMb, ...(runAs ? { runAs } : {}), ...(log ? { log } : {}) });
}

export function createMetaApi(deps: MetaDeps): MetaApi {
  return new MetaApi({ store: new MetaRunStore(deps.db, deps.commits), sandbox: sandboxFor(deps.config.meta), config: deps.config.meta, llmConfigured: deps.llm !== undefined });
}

/** The `cca.meta` job's worker. */
export function createMetaAgent(deps: MetaDeps, opts: { log?: Logger; pollMs?: number } = {}): MetaAgent {
  const { db, memory, commits, config, meteredLlm } = deps;
  return new MetaAgent({
    store: new MetaRunStore(db, commits),
    llmFor: meteredLlm ? (tenantId) => meteredLlm.forTenant(tenantId) : undefined,
    context: deps.context,
    memory,
    hindsight: createHindsight(deps),
    sandbox: sandboxFor(config.meta, opts.log),
    config: config.meta,
    ...opts,
  });
}
