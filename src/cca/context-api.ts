import type { ContextConfig } from '../config.js';
import type { MemoryService } from '../memory/index.js';
import {
  contextAssembleSchema,
  memorySummariesSchema,
  parseInput,
  type ContextAssembleResult,
  type MemorySummaries,
} from '../protocol/index.js';
import { requirePermission, type TenantContext } from '../tenancy/index.js';
import type { ContextArchitect } from './context.js';
import type { SummaryService } from './summaries.js';

export interface ContextApiOptions {
  context: ContextArchitect;
  summaries: SummaryService;
  memory: MemoryService;
  config: Pick<ContextConfig, 'budget'>;
}

/**
 * The Context Architect as callers reach it, over REST and the socket alike: roles are checked
 * and input validated here, and the tenant always comes from the verified token.
 */
export class ContextApi {
  private readonly assembleSchema: ReturnType<typeof contextAssembleSchema>;

  constructor(private readonly opts: ContextApiOptions) {
    this.assembleSchema = contextAssembleSchema(opts.config.budget);
  }

  async assemble(ctx: TenantContext, raw: unknown): Promise<ContextAssembleResult> {
    requirePermission(ctx, 'memory:read');
    return this.opts.context.assemble(ctx, parseInput(this.assembleSchema, raw, 'context request'));
  }

  /** A memory's three summary levels; NOT_FOUND for a memory the caller cannot read. */
  async summaries(ctx: TenantContext, raw: unknown): Promise<MemorySummaries> {
    requirePermission(ctx, 'memory:read');
    const { memoryId } = parseInput(memorySummariesSchema, raw, 'summaries request');
    const memory = await this.opts.memory.get(ctx, memoryId);
    return this.opts.summaries.resolveOne(ctx.tenantId, memory);
  }
}
