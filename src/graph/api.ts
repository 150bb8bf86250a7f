import { z } from 'zod';
import { parseInput } from '../protocol/index.js';
import type {
  GraphEdge,
  GraphNeighborsResult,
  GraphNode,
  GraphNodeResult,
  GraphPathResult,
  GraphRelatedResult,
  GraphSearchResult,
} from '../protocol/index.js';
import { actorOf, requirePermission, type TenantContext } from '../tenancy/index.js';
import type { GraphSnapshotter, SnapshotManifest } from './snapshot/index.js';
import type { GraphStore } from './store.js';

export const graphSnapshotSchema = z.object({ kind: z.enum(['full', 'delta']).default('full') }).strict();

/** Writes a snapshot of the tenant's graph as this process's projection holds it, caught up first. */
export function snapshotGraph(graph: GraphStore, snapshots: GraphSnapshotter, tenantId: string, kind: 'full' | 'delta'): Promise<SnapshotManifest> {
  return graph.withProjection(tenantId, (conn, position) => snapshots.write(conn, tenantId, position, { kind }));
}

/**
 * The graph as callers reach it, over REST and the socket alike: roles are checked here, input is
 * validated by the store's schemas, and the tenant always comes from the verified token.
 */
export class GraphApi {
  constructor(
    private readonly graph: GraphStore,
    private readonly snapshots: GraphSnapshotter,
  ) {}

  node(ctx: TenantContext, input: unknown): Promise<GraphNodeResult> {
    requirePermission(ctx, 'memory:read');
    return this.graph.node(ctx, input);
  }

  neighbors(ctx: TenantContext, input: unknown): Promise<GraphNeighborsResult> {
    requirePermission(ctx, 'memory:read');
    return this.graph.neighbors(ctx, input);
  }

  path(ctx: TenantContext, input: unknown): Promise<GraphPathResult> {
    requirePermission(ctx, 'memory:read');
    return this.graph.path(ctx, input);
  }

  related(ctx: TenantContext, input: unknown): Promise<GraphRelatedResult> {
    requirePermission(ctx, 'memory:read');
    return this.graph.related(ctx, input);
  }

  search(ctx: TenantContext, input: unknown): Promise<GraphSearchResult> {
    requirePermission(ctx, 'memory:read');
    return this.graph.search(ctx, input);
  }

  async upsertNode(ctx: TenantContext, input: unknown): Promise<{ node: GraphNode; seq: number }> {
    requirePermission(ctx, 'memory:write');
    return this.graph.upsertNode(this.writer(ctx), input);
  }

  async upsertEdge(ctx: TenantContext, input: unknown): Promise<{ edge: GraphEdge; seq: number }> {
    requirePermission(ctx, 'memory:write');
    return this.graph.upsertEdge(this.writer(ctx), input);
  }

  async snapshot(ctx: TenantContext, input: unknown): Promise<{ snapshot: SnapshotManifest }> {
    requirePermission(ctx, 'graph:manage');
    const { kind } = parseInput(graphSnapshotSchema, input ?? {}, 'snapshot request');
    return { snapshot: await snapshotGraph(this.graph, this.snapshots, ctx.tenantId, kind) };
  }

  private writer(ctx: TenantContext) {
    return { tenantId: ctx.tenantId, actor: actorOf(ctx), ...(ctx.traceId ? { traceId: ctx.traceId } : {}) };
  }
}
