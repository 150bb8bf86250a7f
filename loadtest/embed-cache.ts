/**
 * Embedding-cache benchmark: one deterministic stream of texts (first sightings, exact repeats,
 * near-identical rewrites, one-word paraphrases) embedded through a deliberately slow local
 * OpenAI-compatible server (BENCH_LATENCY_MS per request), four ways in the same run:
 *   none:            OpenAIEmbedder straight to the server (the baseline);
 *   exact:           CachingEmbeddingService with the exact level only;
 *   exact+semantic:  both levels in process (embedded mode);
 *   redis:           both levels in Redis (cluster mode), when a Redis can be had.
 * It reports the hit rate per level, model requests and tokens avoided, wall time and time saved
 * against the baseline, and how close a semantic hit's vector is to the text's own.
 * `npx tsx loadtest/embed-cache.ts [--requests N] [--concurrency N] [--latency MS]`. Never part
 * of `npm test`; about 30 s. Results: loadtest/results/embed-cache-*.{json,md}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { Redis } from 'ioredis';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  CachingEmbeddingService,
  HashingEmbedder,
  MemoryEmbeddingCache,
  MemorySemanticIndex,
  OpenAIEmbedder,
  RedisEmbeddingCache,
  cosine,
  type EmbeddingStats,
} from '../src/embed/index.js';
import { countTokens } from '../src/obs/index.js';
import { startServices, testRedisUrl, type RunningServices } from '../test/support/index.js';
import { memoryText, pick, prng } from './corpus.js';
import { latencyStats, type LatencyStats } from './graph-report.js';
import { armHardTimeout, intSetting, machineInfo, RESULTS_DIR } from './settings.js';

const DIMS = 384;
const MODEL = 'bench-slow-embed';
const TENANT = 'bench-embed';
const SEMANTIC = { threshold: 0.98, ttlSec: 3600, maxPerScope: 256 };

type Kind = 'new' | 'repeat' | 'near' | 'paraphrase';
/** Shares of the stream; the rest is first sightings. */
const MIX: readonly [Kind, number][] = [
  ['repeat', 0.35],
  ['near', 0.25],
  ['paraphrase', 0.15],
];

/** The same text as the model sees it after normalisation: whitespace and line ends only. */
const REPEATS: readonly ((t: string) => string)[] = [(t) => t, (t) => `  ${t}\n`, (t) => `${t}\r\n`, (t) => `\t${t}`];
/** Rewrites a reader would call the same sentence: case, punctuation, stop words, plurals. */
const NEAR: readonly ((t: string) => string)[] = [
  (t) => t.toUpperCase(),
  (t) => t.toLowerCase().replace(/[.;:,]/g, ''),
  (t) => `So, ${t.replace(/\.$/, '!')}`,
  (t) => t.replace(/\bthe\b/gi, 'this'),
  (t) => t.replace(/\b(limit|team|change|follow-up|handling)\b/g, '$1s'),
];
const SWAP_WORDS = ['tomorrow', 'finance', 'kubernetes', 'rollback', 'zara', 'emeritus', 'quarterly'];

interface Request {
  kind: Kind;
  text: string;
}

function workload(requests: number, seed: number): Request[] {
  const random = prng(seed);
  const seen: string[] = [];
  const out: Request[] = [];
  const fresh = (): Request => {
    const text = memoryText(random);
    seen.push(text);
    return { kind: 'new', text };
  };
  while (out.length < requests) {
    if (seen.length < 20) {
      out.push(fresh());
      continue;
    }
    let r = random();
    const kind = MIX.find(([, share]) => (r -= share) < 0)?.[0] ?? 'new';
    const base = pick(seen, random);
    if (kind === 'repeat') out.push({ kind, text: pick(REPEATS, random)(base) });
    else if (kind === 'near') out.push({ kind, text: pick(NEAR, random)(base) });
    else if (kind === 'paraphrase') {
      const words = base.split(' ');
      const at = Math.floor(random() * words.length);
      words[at] = pick(SWAP_WORDS, random);
      out.push({ kind, text: words.join(' ') });
    } else out.push(fresh());
  }
  return out;
}

/** An OpenAI-compatible /v1/embeddings that takes `latencyMs` per request and counts what it embeds. */
async function startSlowServer(latencyMs: number) {
  const model = new HashingEmbedder(DIMS);
  const counts = { requests: 0, texts: 0, tokens: 0 };
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    req.on('end', () => {
      const input = (JSON.parse(raw) as { input: string[] }).input;
      counts.requests++;
      counts.texts += input.length;
      counts.tokens += input.reduce((n, t) => n + countTokens(t), 0);
      setTimeout(() => {
        void model.embed(input).then((vectors) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ object: 'list', model: MODEL, data: vectors.map((v, index) => ({ object: 'embedding', index, embedding: Array.from(v) })) }));
        });
      }, latencyMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    counts,
    reset: () => Object.assign(counts, { requests: 0, texts: 0, tokens: 0 }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface EmbedOne {
  embed(text: string): Promise<Float32Array>;
  stats?(): EmbeddingStats;
  close(): Promise<void>;
}

interface RunResult {
  name: string;
  seconds: number;
  latencyMs: LatencyStats;
  /** Median latency per kind of request: where the time goes. */
  p50ByKind: Record<Kind, number>;
  modelRequests: number;
  modelTexts: number;
  modelTokens: number;
  levels?: EmbeddingStats;
  /** Share of requests answered without the model. */
  servedFromCache: number;
  timeSavedSeconds?: number;
  timeSavedShare?: number;
  /** Semantic hits: cosine between the vector served and the text's own embedding. */
  semanticFidelity?: { served: number; meanCosine: number; minCosine: number };
}

async function runOne(name: string, subject: EmbedOne, stream: readonly Request[], concurrency: number, server: Awaited<ReturnType<typeof startSlowServer>>): Promise<{ result: RunResult; vectors: Float32Array[] }> {
  server.reset();
  const vectors: Float32Array[] = new Array(stream.length);
  const ms: number[] = [];
  const msByKind: Record<Kind, number[]> = { new: [], repeat: [], near: [], paraphrase: [] };
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < stream.length) {
        const i = next++;
        const t0 = performance.now();
        const request = stream[i] as Request;
        vectors[i] = await subject.embed(request.text);
        const took = performance.now() - t0;
        ms.push(took);
        msByKind[request.kind].push(took);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const levels = subject.stats?.();
  await subject.close();
  const { requests, texts, tokens } = server.counts;
  return {
    vectors,
    result: {
      name,
      seconds,
      latencyMs: latencyStats(ms, seconds),
      p50ByKind: Object.fromEntries(Object.entries(msByKind).map(([kind, list]) => [kind, latencyStats(list, seconds).p50])) as Record<Kind, number>,
      modelRequests: requests,
      modelTexts: texts,
      modelTokens: tokens,
      ...(levels ? { levels } : {}),
      servedFromCache: 1 - texts / stream.length,
    },
  };
}

function caching(server: { url: string }, mode: 'exact' | 'semantic' | 'redis', redisUrl?: string): EmbedOne {
  const embedder = new OpenAIEmbedder({ url: server.url, model: MODEL, dims: DIMS, timeoutMs: 30_000 });
  const redis = mode === 'redis' && redisUrl ? new RedisEmbeddingCache({ url: redisUrl, ttlSec: 600 }) : undefined;
  const cache = redis ?? new MemoryEmbeddingCache({ maxEntries: 50_000, ttlSec: 86_400 });
  const index =
    mode === 'exact'
      ? undefined
      : (redis?.semanticIndex({ ttlSec: SEMANTIC.ttlSec, maxPerScope: SEMANTIC.maxPerScope }) ??
        new MemorySemanticIndex({ ttlSec: SEMANTIC.ttlSec, maxPerScope: SEMANTIC.maxPerScope, maxEntries: 50_000 }));
  const svc = new CachingEmbeddingService(embedder, cache, {
    ...(index ? { semantic: { index, threshold: SEMANTIC.threshold } } : {}),
    ...(redis ? { counters: redis.counters() } : {}),
  });
  return { embed: async (t) => (await svc.embed(TENANT, [t]))[0] as Float32Array, stats: () => svc.stats(), close: () => svc.close() };
}

/** Where a served vector differs from the model's own for that text, the cache approximated. */
function fidelity(served: readonly Float32Array[], truth: readonly Float32Array[]): RunResult['semanticFidelity'] {
  const sims = served.flatMap((v, i) => {
    const own = truth[i] as Float32Array;
    return v.every((x, j) => x === own[j]) ? [] : [cosine(v, own)];
  });
  return { served: sims.length, meanCosine: sims.reduce((a, b) => a + b, 0) / Math.max(1, sims.length), minCosine: sims.length ? Math.min(...sims) : 1 };
}

function renderMarkdown(report: { startedAt: string; settings: Record<string, number>; mix: Record<Kind, number>; runs: RunResult[]; notes: string[]; machine: Record<string, string | number> }): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const lines = [
    `# Embedding cache: hit rate and time saved (${report.startedAt})`,
    '',
    `${report.settings['requests']} single-text embed calls, ${report.settings['concurrency']} in flight, against a local OpenAI-compatible server that takes ${report.settings['latencyMs']} ms per request. Stream: ${Object.entries(report.mix)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}. Semantic threshold ${SEMANTIC.threshold} on the lexical sketch.`,
    '',
    '| run | wall s | saved vs none | p50 ms | p95 ms | model requests | tokens sent | exact hit/miss | semantic hit/miss | served from cache |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of report.runs) {
    const l = r.levels;
    lines.push(
      `| ${r.name} | ${r.seconds.toFixed(2)} | ${r.timeSavedSeconds === undefined ? '-' : `${r.timeSavedSeconds.toFixed(2)} s (${pct(r.timeSavedShare ?? 0)})`} | ${r.latencyMs.p50.toFixed(1)} | ${r.latencyMs.p95.toFixed(1)} | ${r.modelRequests} | ${r.modelTokens} | ${l ? `${l.exact.hits}/${l.exact.misses}` : '-'} | ${l ? `${l.semantic.hits}/${l.semantic.misses}` : '-'} | ${pct(r.servedFromCache)} |`,
    );
  }
  lines.push('', 'Median ms per kind of request:', '', '| run | new | repeat | near | paraphrase |', '|---|---:|---:|---:|---:|');
  for (const r of report.runs) lines.push(`| ${r.name} | ${(['new', 'repeat', 'near', 'paraphrase'] as const).map((k) => r.p50ByKind[k].toFixed(1)).join(' | ')} |`);
  const fid = report.runs.filter((r) => r.semanticFidelity && r.semanticFidelity.served > 0);
  if (fid.length > 0) {
    lines.push(
      '',
      'Semantic hits serve another text’s vector; how close it is to the text’s own embedding. The slow server’s model is the offline hashing embedder, which is itself blind to case and punctuation, so this is a lower bound on the drift a real model would show:',
      '',
    );
    for (const r of fid) lines.push(`- ${r.name}: ${r.semanticFidelity?.served} approximated, mean cosine ${r.semanticFidelity?.meanCosine.toFixed(4)}, min ${r.semanticFidelity?.minCosine.toFixed(4)}`);
  }
  if (report.notes.length > 0) lines.push('', ...report.notes.map((n) => `- ${n}`));
  lines.push('', `Machine: ${report.machine['cpuCount']} × ${report.machine['cpuModel']}, load ${report.machine['loadAverageAtStart']} at start, Node ${report.machine['node']}.`);
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { requests: { type: 'string' }, concurrency: { type: 'string' }, latency: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    process.stdout.write('npx tsx loadtest/embed-cache.ts [--requests 1200] [--concurrency 4] [--latency 20]\n');
    return;
  }
  const requests = intSetting('--requests', values.requests ?? process.env['BENCH_REQUESTS'], 1200, 50, 100_000);
  const concurrency = intSetting('--concurrency', values.concurrency ?? process.env['BENCH_CONCURRENCY'], 4, 1, 256);
  const latencyMs = intSetting('--latency', values.latency ?? process.env['BENCH_LATENCY_MS'], 20, 0, 10_000);
  const startedAt = new Date().toISOString();
  const machine = machineInfo([]);
  const notes: string[] = [];
  armHardTimeout(170, (w) => process.stderr.write(`${w}\n`));

  const stream = workload(requests, 42);
  const mix = { new: 0, repeat: 0, near: 0, paraphrase: 0 };
  for (const r of stream) mix[r.kind]++;
  const truth = await new HashingEmbedder(DIMS).embed(stream.map((r) => r.text));
  const server = await startSlowServer(latencyMs);
  let services: RunningServices | undefined;
  const runs: RunResult[] = [];
  try {
    const none = new OpenAIEmbedder({ url: server.url, model: MODEL, dims: DIMS, timeoutMs: 30_000 });
    const baseline = await runOne('none', { embed: async (t) => (await none.embed([t]))[0] as Float32Array, close: async () => {} }, stream, concurrency, server);
    runs.push(baseline.result);
    runs.push((await runOne('exact', caching(server, 'exact'), stream, concurrency, server)).result);
    const semantic = await runOne('exact+semantic', caching(server, 'semantic'), stream, concurrency, server);
    runs.push({ ...semantic.result, semanticFidelity: fidelity(semantic.vectors, truth) });

    let redisUrl = testRedisUrl();
    if (!redisUrl) {
      services = await startServices({ redis: true, log: (line) => process.stderr.write(`${line}\n`) });
      redisUrl = services.redisUrl;
      notes.push(...services.problems);
    }
    if (redisUrl) {
      // Only the benchmark tenant's own prefix is touched: emptied before (a previous run's
      // entries would be free hits) and after (nothing left behind in a shared Redis).
      const client = new Redis(redisUrl);
      const clear = async () => {
        const keys = await client.keys(`t:${TENANT}:*`);
        if (keys.length > 0) await client.del(...keys);
      };
      try {
        await clear();
        const redisRun = await runOne('exact+semantic (redis)', caching(server, 'redis', redisUrl), stream, concurrency, server);
        runs.push({ ...redisRun.result, semanticFidelity: fidelity(redisRun.vectors, truth) });
        await clear();
      } finally {
        await client.quit();
      }
    } else notes.push('no Redis: the cluster-mode run was skipped');
  } finally {
    await server.close();
    await services?.stop();
  }
  const base = runs[0] as RunResult;
  for (const r of runs.slice(1)) {
    r.timeSavedSeconds = base.seconds - r.seconds;
    r.timeSavedShare = r.timeSavedSeconds / base.seconds;
  }
  machine['loadAverageAtEnd'] = Number((os.loadavg()[0] ?? 0).toFixed(2));
  const load = Number(machine['loadAverageAtStart']);
  if (load > os.cpus().length) {
    notes.push(`the machine was busy (load ${load} on ${os.cpus().length} CPUs at the start): absolute times are inflated, and Redis round trips most of all; the hit rates and model requests do not depend on it`);
  }
  const report = { startedAt, settings: { requests, concurrency, latencyMs }, mix, runs, notes, machine };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = path.join(RESULTS_DIR, `embed-cache-${startedAt.replace(/[:.]/g, '-')}.json`);
  const md = path.join(RESULTS_DIR, 'embed-cache-latest.md');
  const markdown = renderMarkdown(report);
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(md, markdown);
  process.stdout.write(`${markdown}\nwrote ${path.relative(process.cwd(), json)} and ${path.relative(process.cwd(), md)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
