/**
 * The graph benchmark's data: deterministic power-law-ish graphs, the ops that write them through
 * GraphStore, and an in-memory adjacency (CSR) that is the ground truth every answer is checked
 * against, so a fast wrong answer cannot pass for a fast one.
 */
import { nodeIdFor } from '../src/graph/index.js';
import type { GraphOpDraft } from '../src/protocol/index.js';
import { prng, shuffled } from './corpus.js';

const WORDS = `atlas beacon cedar delta ember falcon garnet harbor iris juniper kestrel lumen maple nimbus onyx
  pylon quartz raven sable tundra umber vertex willow xenon yarrow zephyr amber basalt cobalt dune
  echo fjord glacier heron indigo jasper kelp lagoon mesa nova orchid prism quill reef summit tide
  ultra vale wren yonder zinc arbor brook cliff dawn fern grove hollow isle`
  .trim()
  .split(/\s+/);

export const KINDS = ['person', 'project', 'library', 'service', 'concept', 'team'] as const;
export const RELATIONS = ['uses', 'depends_on', 'mentions', 'owns', 'part_of', 'calls', 'works_on', 'related_to'] as const;

/**
 * rank = floor(size · u^skew): P(rank < k) = (k/size)^(1/skew), so the top ranks are hubs. With
 * 1M edges over 100k nodes the top target gets ~1% of all edges, the median node ~15-20 in all.
 * Sources are skewed less than targets: many things use a few popular libraries and services.
 */
const SOURCE_SKEW = 1.5;
const TARGET_SKEW = 2.5;
/** Relations are skewed too: "uses" and "depends_on" dominate, "related_to" is rare. */
const RELATION_SKEW = 2;

export interface Naming {
  label: string;
  kind: string;
}

export interface GraphSpec {
  nodes: number;
  edges: number;
  /** Share of the nodes (and edges) in a separate component no other node reaches: "not connected" pairs. */
  islandShare: number;
  seed: number;
  /** Edges generated beyond `edges`, written later (after a snapshot) as a log tail; never queried here. */
  tailEdges?: number;
  /** Node i's label and kind; by default the generator's own, unique by a number suffix. */
  naming?: (i: number) => Naming;
  /** Marks the default labels of one tenant apart from another's ("t3-17"), so their ids differ. */
  labelPrefix?: string;
}

interface Csr {
  start: Int32Array;
  list: Int32Array;
}

function csr(nodes: number, from: Int32Array, to: Int32Array, count: number): Csr {
  const start = new Int32Array(nodes + 1);
  for (let e = 0; e < count; e++) start[(from[e] as number) + 1] = (start[(from[e] as number) + 1] as number) + 1;
  for (let i = 0; i < nodes; i++) start[i + 1] = (start[i + 1] as number) + (start[i] as number);
  const fill = start.slice(0, nodes);
  const list = new Int32Array(count);
  for (let e = 0; e < count; e++) {
    const at = fill[from[e] as number] as number;
    list[at] = to[e] as number;
    fill[from[e] as number] = at + 1;
  }
  return { start, list };
}

const cap = (word: string): string => word.charAt(0).toUpperCase() + word.slice(1);

export class SyntheticGraph {
  readonly nodeCount: number;
  /** Edges the queries see: [0, edgeCount). Tail edges follow them in the same arrays. */
  readonly edgeCount: number;
  readonly totalEdges: number;
  /** Nodes from here on form the island component. */
  readonly islandStart: number;
  readonly islandEdges: number;
  readonly ids: string[] = [];
  readonly labels: string[] = [];
  readonly kinds: string[] = [];
  readonly teams: string[] = [];
  readonly source: Int32Array;
  readonly target: Int32Array;
  readonly relation: Uint8Array;
  /** Hundredths: 10..100 → 0.10..1.00, short in the log's JSON. */
  readonly weight: Uint8Array;
  private readonly out: Csr;
  private readonly in: Csr;
  /** One stamp per node per BFS, so a search needs no fresh Set. */
  private readonly mark: Int32Array;
  private epoch = 0;

  constructor(spec: GraphSpec) {
    const random = prng(spec.seed);
    const n = spec.nodes;
    this.nodeCount = n;
    this.edgeCount = spec.edges;
    this.totalEdges = spec.edges + (spec.tailEdges ?? 0);
    const islandNodes = spec.islandShare > 0 ? Math.max(2, Math.round(n * spec.islandShare)) : 0;
    this.islandStart = n - islandNodes;
    this.islandEdges = islandNodes > 0 ? Math.round(spec.edges * (islandNodes / n)) : 0;

    for (let i = 0; i < n; i++) {
      const named = spec.naming?.(i) ?? {
        label: `${cap(pickWord(random))} ${cap(pickWord(random))} ${spec.labelPrefix ?? ''}${i}`,
        kind: KINDS[Math.floor(random() * KINDS.length)] as string,
      };
      this.labels.push(named.label);
      this.kinds.push(named.kind);
      this.ids.push(nodeIdFor(named.kind, named.label));
      this.teams.push(pickWord(random));
    }

    this.source = new Int32Array(this.totalEdges);
    this.target = new Int32Array(this.totalEdges);
    this.relation = new Uint8Array(this.totalEdges);
    this.weight = new Uint8Array(this.totalEdges);
    // One edge per (source, relation, target), as edgeIdFor makes it: a repeat would be an update.
    const seen = new Set<number>();
    let next = 0;
    const component = (offset: number, size: number, count: number) => {
      const rank = shuffled(
        Array.from({ length: size }, (_, i) => offset + i),
        random,
      );
      const end = next + count;
      let attempts = 0;
      while (next < end) {
        if (++attempts > count * 20) throw new Error(`cannot draw ${count} distinct edges among ${size} nodes`);
        const s = rank[Math.floor(size * random() ** SOURCE_SKEW)] as number;
        const t = rank[Math.floor(size * random() ** TARGET_SKEW)] as number;
        const r = Math.floor(RELATIONS.length * random() ** RELATION_SKEW);
        if (s === t) continue;
        const key = (s * RELATIONS.length + r) * n + t;
        if (seen.has(key)) continue;
        seen.add(key);
        this.source[next] = s;
        this.target[next] = t;
        this.relation[next] = r;
        this.weight[next] = 10 + Math.floor(random() * 91);
        next++;
      }
    };
    component(0, this.islandStart, spec.edges - this.islandEdges);
    if (islandNodes > 0) component(this.islandStart, islandNodes, this.islandEdges);
    component(0, this.islandStart, spec.tailEdges ?? 0);

    this.out = csr(n, this.source, this.target, this.edgeCount);
    this.in = csr(n, this.target, this.source, this.edgeCount);
    this.mark = new Int32Array(n);
  }

  /** Writes node i as extraction would: id from (kind, label), a source memory per few nodes. */
  nodeOps(from: number, to: number): GraphOpDraft[] {
    const ops: GraphOpDraft[] = [];
    for (let i = from; i < to; i++) {
      ops.push({
        op: 'node.upsert',
        label: this.labels[i] as string,
        kind: this.kinds[i] as string,
        properties: { rank: i % 1000, team: this.teams[i] as string },
        sourceMemoryId: `m${Math.floor(i / 4)}`,
      });
    }
    return ops;
  }

  /** Edges [from, to); the store derives each id from (source, relation, target). */
  edgeOps(from: number, to: number): GraphOpDraft[] {
    const ops: GraphOpDraft[] = [];
    for (let e = from; e < to; e++) {
      ops.push({
        op: 'edge.upsert',
        source: this.ids[this.source[e] as number] as string,
        target: this.ids[this.target[e] as number] as string,
        relation: RELATIONS[this.relation[e] as number] as string,
        weight: (this.weight[e] as number) / 100,
        sourceMemoryId: `m${Math.floor(e / 8)}`,
      });
    }
    return ops;
  }

  outDegree(i: number): number {
    return (this.out.start[i + 1] as number) - (this.out.start[i] as number);
  }

  degree(i: number): number {
    return this.outDegree(i) + (this.in.start[i + 1] as number) - (this.in.start[i] as number);
  }

  /** Node indices, highest degree first. */
  byDegree(): number[] {
    const degrees = Array.from({ length: this.nodeCount }, (_, i) => this.degree(i));
    return Array.from({ length: this.nodeCount }, (_, i) => i).sort((a, b) => (degrees[b] as number) - (degrees[a] as number) || a - b);
  }

  degreeSummary(): { max: number; p50: number; p99: number; top: number[]; topPercentEdgeShare: number } {
    const sorted = this.byDegree().map((i) => this.degree(i));
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor((1 - q) * sorted.length))] as number;
    const onePercent = Math.max(1, Math.floor(sorted.length / 100));
    const endpointsOfTop = sorted.slice(0, onePercent).reduce((a, b) => a + b, 0);
    return { max: sorted[0] ?? 0, p50: at(0.5), p99: at(0.99), top: sorted.slice(0, 5), topPercentEdgeShare: endpointsOfTop / (2 * this.edgeCount) };
  }

  /**
   * Nodes within `depth` hops either way, excluding the start, level by level as GraphStore's
   * neighbours walk them. A walker capped at `limit` returns min(limit, this).
   */
  neighborhood(start: number, depth: number): number {
    const epoch = this.nextEpoch();
    this.mark[start] = epoch;
    let frontier = [start];
    let count = 0;
    for (let level = 1; level <= depth && frontier.length > 0; level++) {
      const next: number[] = [];
      for (const u of frontier) {
        for (const adj of [this.out, this.in]) {
          for (let k = adj.start[u] as number; k < (adj.start[u + 1] as number); k++) {
            const v = adj.list[k] as number;
            if (this.mark[v] === epoch) continue;
            this.mark[v] = epoch;
            next.push(v);
          }
        }
      }
      count += next.length;
      frontier = next;
    }
    return count;
  }

  /** Length of the shortest out-path from → to, or undefined beyond maxDepth. */
  distance(from: number, to: number, maxDepth: number): number | undefined {
    if (from === to) return 0;
    const epoch = this.nextEpoch();
    this.mark[from] = epoch;
    let frontier = [from];
    for (let level = 1; level <= maxDepth && frontier.length > 0; level++) {
      const next: number[] = [];
      for (const u of frontier) {
        for (let k = this.out.start[u] as number; k < (this.out.start[u + 1] as number); k++) {
          const v = this.out.list[k] as number;
          if (v === to) return level;
          if (this.mark[v] === epoch) continue;
          this.mark[v] = epoch;
          next.push(v);
        }
      }
      frontier = next;
    }
    return undefined;
  }

  /** A random out-walk of `steps` distinct hops from a random main node: its end is reachable. */
  walk(random: () => number, steps: number): { from: number; to: number } {
    for (;;) {
      const from = Math.floor(random() * this.islandStart);
      const visited = new Set([from]);
      let at = from;
      for (let s = 0; s < steps; s++) {
        const options: number[] = [];
        for (let k = this.out.start[at] as number; k < (this.out.start[at + 1] as number); k++) {
          const v = this.out.list[k] as number;
          if (!visited.has(v)) options.push(v);
        }
        if (options.length === 0) break;
        at = options[Math.floor(random() * options.length)] as number;
        visited.add(at);
      }
      if (visited.size === steps + 1) return { from, to: at };
    }
  }

  private nextEpoch(): number {
    this.epoch += 1;
    return this.epoch;
  }
}

function pickWord(random: () => number): string {
  return WORDS[Math.floor(random() * WORDS.length)] as string;
}

/** The words labels are made of: a search for one matches ~3% of the nodes, in label or properties. */
export const LABEL_WORDS: readonly string[] = WORDS;
