/**
 * Deterministic synthetic text for the REST benchmark: memories to seed and queries to search.
 *
 * The vocabulary is a few hundred words so that queries share words with many memories (the
 * ranking has real candidates to sort) while no two memories are near-duplicates, which would
 * make the dedup path merge them and leave the tenant short of N memories.
 */

/** mulberry32: tiny, fast, and the same sequence on every machine, so runs compare. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const words = (list: string): readonly string[] => list.trim().split(/\s+/);

const VOCABULARY = {
  person: words(`alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert
    sybil trent victor walter yara zoe amir bea chen dmitri esme farah gus hana ilya`),
  team: words('platform payments search billing growth infra security data mobile frontend backend support research compliance ml'),
  component: words(`scheduler gateway cache queue indexer crawler ledger invoicer auth-proxy router worker-pool
    planner tokenizer embedder replica shard webhook notifier exporter importer dashboard checkout cart
    session-store rate-limiter feature-flags config-service migrator backup snapshotter audit-log reporter
    ranker retriever summarizer classifier deduplicator archiver`),
  tech: words(`postgres redis kafka kubernetes terraform grafana prometheus nginx envoy rust golang typescript
    python graphql grpc websockets s3 lambda docker helm vault consul elasticsearch clickhouse sqlite
    rabbitmq nats temporal airflow spark`),
  adjective: words(`stale flaky slow fast brittle idempotent eventual strict lenient verbose quiet noisy encrypted
    compressed cached sharded partitioned replicated immutable versioned nightly weekly hourly regional
    global private shared critical minor urgent deprecated experimental stable legacy modern lightweight
    heavy async batched streaming`),
  noun: words(`latency throughput timeout retry backoff deadlock memory leak outage incident rollback deploy
    release hotfix schema index query migration budget quota invoice refund customer contract renewal
    discount ticket escalation runbook alert metric trace span log error warning certificate key secret
    token password permission role policy backlog sprint roadmap milestone demo review standup retro estimate`),
  happened: words(`failed crashed stalled recovered improved regressed doubled halved restarted spiked dropped
    leaked stabilised degraded passed blocked unblocked merged reverted shipped paused resumed expired
    rotated migrated flapped throttled retried succeeded`),
  action: words(`refactor migrate deprecate benchmark shard cache replicate document monitor throttle rewrite
    upgrade downgrade audit encrypt compress archive split merge retire pin profile trace backfill reindex`),
  when: words(`monday tuesday wednesday thursday friday weekend morning evening midnight q1 q2 q3 q4 january
    february march april may june july august september october november december`),
  customer: words('acme globex initech umbrella hooli soylent stark wayne wonka cyberdyne tyrell oscorp vandelay gringotts massive'),
} as const;

type Slot = keyof typeof VOCABULARY;

/** `{slot}` placeholders, each filled by an independent draw from that slot's word list. */
function fill(template: string, random: () => number): string {
  return template.replace(/\{(\w+)\}/g, (_match, slot: string) => {
    const list = VOCABULARY[slot as Slot];
    return list[Math.floor(random() * list.length)] ?? slot;
  });
}

const MEMORY_TEMPLATES = [
  '{person} prefers {adjective} {noun} handling in the {component} and asked the {team} team to {action} it before {when}.',
  'The {component} {happened} on {when} because the {adjective} {noun} from {tech} hit the {noun} limit.',
  'Decision: {team} will {action} the {component} onto {tech} by {when}; {person} owns the {noun} follow-up.',
  '{customer} reported that {adjective} {noun} in the {component} {happened} after the {tech} {noun} change.',
  'Remember that {customer} requires {adjective} {noun} for every {noun} and escalates to {person} on {when}.',
  'Runbook note: when the {tech} {component} {happened}, {action} the {noun} first, then page {person} from {team}.',
  '{person} and {person} agreed the {adjective} {component} should {action} its {noun} using {tech} during {when}.',
  'Postmortem: the {noun} {happened} in {component} for {customer}; root cause was a {adjective} {noun} in {tech}.',
] as const;

const QUERY_TEMPLATES = [
  '{adjective} {noun} in the {component}',
  'why did the {component} {happened}',
  'what does {customer} require for {noun}',
  '{person} preference for {tech}',
  'how to {action} the {component} with {tech}',
  '{team} team decision about {noun}',
] as const;

/** The next memory of a seeded stream: same seed, same texts, on every run. */
export function memoryText(random: () => number): string {
  return fill(pick(MEMORY_TEMPLATES, random), random);
}

/** Search phrases drawn from the memories' own vocabulary, so every query has matches to rank. */
export function searchQueries(count: number, seed: number): string[] {
  const random = prng(seed);
  // Round-robin over the templates so even a short list mixes every kind of question.
  return Array.from({ length: count }, (_, i) => fill(QUERY_TEMPLATES[i % QUERY_TEMPLATES.length] as string, random));
}

export function pick<T>(list: readonly T[], random: () => number): T {
  const item = list[Math.floor(random() * list.length)];
  if (item === undefined) throw new Error('pick() from an empty list');
  return item;
}

/** Fisher-Yates on a copy, driven by the given PRNG. */
export function shuffled<T>(list: readonly T[], random: () => number): T[] {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

export const VOCABULARY_SIZE = Object.values(VOCABULARY).reduce((n, list) => n + list.length, 0);
